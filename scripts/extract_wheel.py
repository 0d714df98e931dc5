"""Extract the files under one folder of a wheel (a zip) into a directory.

Usage: extract_wheel.py WHEEL PREFIX DEST
Only regular files under PREFIX are written, flattened relative to PREFIX;
Python sources and packaging metadata are skipped.
"""
import glob
import os
import sys
import zipfile


def main() -> int:
    pattern, prefix, dest = sys.argv[1:4]
    wheels = sorted(glob.glob(pattern))
    if not wheels:
        print(f"no wheel matches {pattern}", file=sys.stderr)
        return 1
    os.makedirs(dest, exist_ok=True)
    with zipfile.ZipFile(wheels[-1]) as zf:
        for info in zf.infolist():
            name = info.filename
            if info.is_dir() or not name.startswith(prefix) or name.endswith(".py"):
                continue
            rel = name[len(prefix):]
            if ".." in rel.split("/"):
                continue
            target = os.path.join(dest, rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            tmp = target + ".part"
            with zf.open(info) as src, open(tmp, "wb") as out:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
            os.replace(tmp, target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
