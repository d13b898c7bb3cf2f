"""Write the bundled sample photos (``toolkit/data/photos/``) from scikit-image's sample data.

Only photos whose scikit-image docstring says public domain or CC0 are used (see
``toolkit/data/LICENSES.md``). Each is saved as an RGB JPEG, quality 85, at most 640 px on the long
side, so the package stays light. Re-running gives byte-identical files for the same Pillow version.

Usage::

    python scripts/make_sample_photos.py          # needs scikit-image (the dev extra)
"""

from __future__ import annotations

from pathlib import Path

#: (id, scikit-image loader). Keep in step with toolkit/data/photos.csv and LICENSES.md.
PHOTOS = [
    ("astronaut", "astronaut"),
    ("coffee", "coffee"),
    ("cat", "chelsea"),
    ("rocket", "rocket"),
    ("deep-field", "hubble_deep_field"),
    ("camera", "camera"),
    ("brick-wall", "brick"),
]
LONG_SIDE = 640
QUALITY = 85
OUT = Path(__file__).resolve().parent.parent / "toolkit" / "data" / "photos"


def main() -> None:
    import skimage.data
    from PIL import Image

    OUT.mkdir(parents=True, exist_ok=True)
    total = 0
    for photo_id, loader in PHOTOS:
        image = Image.fromarray(getattr(skimage.data, loader)()).convert("RGB")
        scale = LONG_SIDE / max(image.size)
        if scale < 1:
            image = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
        target = OUT / f"{photo_id}.jpg"
        image.save(target, "JPEG", quality=QUALITY, optimize=True)
        total += target.stat().st_size
        print(f"{target.name}: {image.width}x{image.height}, {target.stat().st_size / 1024:.0f} KB")
    print(f"total {total / 1024:.0f} KB")


if __name__ == "__main__":
    main()
