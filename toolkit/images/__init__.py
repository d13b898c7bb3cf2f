"""Local image work: decoding, CLIP preprocessing and the image embedder (sources live in ``sources``).

Nothing heavy is imported here; import the submodules (``toolkit.images.decode``,
``toolkit.images.embedder``) where they are needed.
"""
