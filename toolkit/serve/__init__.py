"""``toolkit serve``: a search page over ``toolkit.search`` (see ``toolkit.serve.app``)."""

from toolkit.serve.app import ENV_TOKEN, check_bind, create_app, is_loopback, make_server, serve

__all__ = ["ENV_TOKEN", "check_bind", "create_app", "is_loopback", "make_server", "serve"]
