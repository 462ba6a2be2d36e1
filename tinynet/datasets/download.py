"""Get EMNIST files into a data folder: download the NIST archive, or take files you have.

The official release is one zip, ``gzip.zip`` (about 540 MB), whose members
``gzip/emnist-NAME-{train,test}-{images-idx3,labels-idx1}-ubyte.gz`` and
``gzip/emnist-NAME-mapping.txt`` hold every split. ``ensure_dataset`` downloads
it once into ``DATA_DIR/emnist-gzip.zip`` (via ``emnist-gzip.zip.part``, resumed
with an HTTP Range request after an interruption), then extracts only the
requested split's files. Each file is written under a temporary name, checked
(sha256 against ``PUBLISHED_SHA256``; where no checksum is known, by parsing it),
fsync'ed and only then renamed to its final name, so a final name never holds a
partial or unverified file.

Command line (``tinynet.cli.download``)::

    python3 -m tinynet download [--dataset NAME] [--data-dir DIR] [--url URL]
                                [--from PATH] [--split {train,test}]
"""

import hashlib
import http.client
import os
import re
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from tqdm import tqdm

from ..errors import TinynetError
from ..files.atomic import atomic_write
from .idx import (SPLITS, DataError, dataset_paths, idx_filenames, read_idx_images,
                  read_idx_labels, read_mapping)

OFFICIAL_URL = "https://biometrics.nist.gov/cs_links/EMNIST/gzip.zip"
ARCHIVE_NAME = "emnist-gzip.zip"
USER_AGENT = "Mozilla/5.0 (compatible; tinynet-data/0.1; Python urllib)"
TIMEOUT_S = 60
CHUNK = 1 << 20

# sha256 of the files inside the official gzip.zip. The balanced files, the
# bymerge test files and the mapping are the values published with the
# official release (the test suite checks real copies against them). The others come
# from the checksum table of the `mnists` package (github.com/notwa/mnists,
# mnists/hashes.py), which agrees with every one of those published values;
# its letters, digits and mnist values are also pinned, independently, by other
# public projects that extracted them from the official zip. No checksum is
# known for the mapping files of byclass, letters, digits and mnist.
PUBLISHED_SHA256 = {
    "emnist-balanced-train-images-idx3-ubyte.gz": "74295e75e4e9fa2c102147460ee7eb763653d5132d883a84fb88932bfb8d2db4",
    "emnist-balanced-test-images-idx3-ubyte.gz": "117fc12b015e37ea98bfb2cbba3f77c3782c056cdbd219b87abfc8661d7135db",
    "emnist-balanced-train-labels-idx1-ubyte.gz": "b46d41e5156a0a8aaaa4d18979fdd1588850fa8571018acffd5d93b325a7d6ed",
    "emnist-balanced-test-labels-idx1-ubyte.gz": "a67cac948379b67270b9a4d0a01c8ec661598accf2f2b1964340b7c83cb175cd",
    "emnist-balanced-mapping.txt": "956dc507bf69e9f31f4e3e876d22ec66124aa229b5d0bd65ab8956a8044d3ede",
    "emnist-bymerge-train-images-idx3-ubyte.gz": "39bf8c68037dad40db35348895f7e4e056e8c0a005ab78869c9fbc2c96e947be",
    "emnist-bymerge-test-images-idx3-ubyte.gz": "5e5815ec1b522089134435f7c55e75a00960b58414793593ffff23efc0821683",
    "emnist-bymerge-train-labels-idx1-ubyte.gz": "2c47293b9e62d6abf6ad05fbf67e40baa32adfd380b8d7b44dcc35534b64e1f1",
    "emnist-bymerge-test-labels-idx1-ubyte.gz": "8bda1516255683ba9071e141947ca0c91a911176065cdd6259b0b4d8dc5b5f35",
    "emnist-bymerge-mapping.txt": "956dc507bf69e9f31f4e3e876d22ec66124aa229b5d0bd65ab8956a8044d3ede",
    "emnist-byclass-train-images-idx3-ubyte.gz": "9e21987f03a6eb8b870187e785883ddad96947299587908f1a7ec2ca0f4be5f0",
    "emnist-byclass-test-images-idx3-ubyte.gz": "5ec835bd5d5b1a66378a132e727fef20fe994b3cc666899befcca5ac766f50cd",
    "emnist-byclass-train-labels-idx1-ubyte.gz": "f7ef403d48dc18a89dae0d83d11ee69cecb6e1c12c3a961d03712e495c02a8fa",
    "emnist-byclass-test-labels-idx1-ubyte.gz": "501e305eeeacb093b162592d80e8a2632040872360fa6d85cfcb2200d91ca92a",
    "emnist-letters-train-images-idx3-ubyte.gz": "6288f418a917e007bf5fddb823a2dc7a5c6a35031401b93292a539cb12bd881f",
    "emnist-letters-test-images-idx3-ubyte.gz": "50f0e93d75b99b463e9760b8345866f22587fa2c2fba472730a5ba09c693412d",
    "emnist-letters-train-labels-idx1-ubyte.gz": "9759af91ea6bccdf07a6040fd085861f2ec88e37f7c3f5760f6feb57106fbe5c",
    "emnist-letters-test-labels-idx1-ubyte.gz": "924955c31fe7fd809b7303b5c0141282955f4b8390c74cdfd5d80435e0f4b4cb",
    "emnist-digits-train-images-idx3-ubyte.gz": "f7c95004d14d81af89522e67d8f0c781dfb3bd544181c81bfe1eb6b41c35b726",
    "emnist-digits-test-images-idx3-ubyte.gz": "20ebe43509264f7639d37c835a3f0b009e90b29e00a099a03101abe1644a3f63",
    "emnist-digits-train-labels-idx1-ubyte.gz": "6638a6ff5fe2eefd9cca2471995b46c82986b8e4b2a70d2f5ce8e05d7edb319e",
    "emnist-digits-test-labels-idx1-ubyte.gz": "bad1834c45d5988e270b99d43b13edc3fd898f658ffbc2caf2846ef27f7b05b0",
    "emnist-mnist-train-images-idx3-ubyte.gz": "5f9942f441031c0f1f2e4d162059fd6e19ea808b34c328b6d16cab0ed24c78f2",
    "emnist-mnist-test-images-idx3-ubyte.gz": "b25640fa9e356c618132f5df347c95ef5bae6d9c2596be1de40f7e0ae1c3eac6",
    "emnist-mnist-train-labels-idx1-ubyte.gz": "00c6d3c2342fdffb1711e0b5656cac4ce5862d2826399d383a9bac07d612e9f8",
    "emnist-mnist-test-labels-idx1-ubyte.gz": "bcc5385d38f083dba046f5f756e99b32f5ea7fad122c6243c71c2239873065ca",
}


def dataset_files(name, splits=SPLITS):
    """File names of dataset ``name`` as the archive holds them (IDX gzipped), for ``splits``."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise DataError(f"{name!r}: not a dataset name (letters, digits, '.', '_', '-')")
    files = []
    for split in splits:
        names = idx_filenames(name, split)
        files += [names["images"] + ".gz", names["labels"] + ".gz"]
    return files + [idx_filenames(name, "test")["mapping"]]


def ensure_dataset(data_dir, name, download=True, *, splits=SPLITS,
                   url=OFFICIAL_URL, checksums=PUBLISHED_SHA256,
                   retries=3, out=print):
    """Make sure ``data_dir`` holds dataset ``name`` (its ``splits``), downloading if allowed.

    Files already there (plain or .gz) are left alone. Missing ones are extracted
    from ``data_dir/emnist-gzip.zip``, which is first downloaded from ``url`` if
    absent (``retries`` automatic resumes after a dropped connection). With
    ``download=False`` nothing is downloaded: if that archive is absent too, a
    DataError lists the missing files and how to get them.
    ``checksums`` maps file names to sha256; ``out`` receives progress lines.
    """
    data_dir = Path(data_dir)
    wanted = dataset_files(name, splits)
    missing = [f for f in wanted if not _present(data_dir, f)]
    if not missing:
        return
    archive = data_dir / ARCHIVE_NAME
    if not archive.is_file():
        if not download:
            for split in splits:
                dataset_paths(data_dir, name, split)
        hint = (f"put {', '.join(missing)} (from the EMNIST archive gzip.zip, folder gzip/) "
                f"into {data_dir}/, or run `python3 -m tinynet download --dataset {name} "
                f"--data-dir {data_dir} --from PATH` with PATH a gzip.zip or a folder holding them")
        data_dir.mkdir(parents=True, exist_ok=True)
        out(f"downloading {url} to {archive}")
        fetch(url, archive, retries=retries, hint=hint, out=out)
    install_from(archive, data_dir, name, splits=splits, checksums=checksums, only=missing,
                 out=out)


def install_from(source, data_dir, name, *, splits=SPLITS,
                 checksums=PUBLISHED_SHA256, only=None, out=print):
    """Copy dataset ``name``'s files from ``source`` (a zip archive or a folder) into ``data_dir``.

    In a zip, members are found by file name in any folder (``gzip/`` in the
    official one); in a folder, at its top or in its ``gzip/`` subfolder. Every
    file is verified before it gets its final name. ``only`` limits the copy to
    those file names.
    """
    source, data_dir = Path(source), Path(data_dir)
    files = [f for f in dataset_files(name, splits) if only is None or f in only]
    data_dir.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        found = {}
        for f in files:  # gzipped or plain, at the top or in gzip/
            candidates = (folder / n for folder in (source, source / "gzip")
                          for n in (f, f.removesuffix(".gz")))
            path = next((p for p in candidates if p.is_file()), None)
            if path:
                found[f] = path
        mappings = [*source.glob("*-mapping.txt"), *source.glob("gzip/*-mapping.txt")]
        _require(source, files, found, [p.name for p in mappings])
        for f in files:
            with open(found[f], "rb") as src:
                _install_file(src, str(found[f]), data_dir / found[f].name,
                              checksums.get(found[f].name), out)
        return
    try:
        archive = zipfile.ZipFile(source)
    except FileNotFoundError:
        raise DataError(f"{source}: no such file or folder") from None
    except OSError as e:
        raise DataError(f"{source}: cannot read: {e.strerror or e}") from None
    except (zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"{source}: not a valid zip archive ({e})") from None
    with archive:
        members = {PurePosixPath(m).name: m for m in archive.namelist() if not m.endswith("/")}
        found = {f: members[f] for f in files if f in members}
        _require(source, files, found, [m for m in members if m.endswith("-mapping.txt")])
        for f in files:
            origin = f"{source}:{found[f]}"
            try:
                src = archive.open(found[f])
            except (zipfile.BadZipFile, NotImplementedError) as e:
                raise DataError(f"{origin}: cannot extract ({e})") from None
            with src:
                _install_file(src, origin, data_dir / f, checksums.get(f), out)


def fetch(url, dest, *, retries=3, hint="", out=print):
    """Download ``url`` to ``dest`` through ``dest.part``, resuming it with HTTP Range.

    A dropped connection is resumed up to ``retries`` times; after that the
    ``.part`` file is kept so that the next call resumes it. ``dest`` appears
    only once the download is complete. ``hint`` (how else to get the data) ends
    the message of a DataError for a failed connection.
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    for attempt in range(retries + 1):
        try:
            _fetch_once(url, part, hint)
            break
        except _Interrupted as e:
            done = part.stat().st_size if part.exists() else 0
            if attempt == retries:
                raise DataError(f"{url}: download interrupted at {done} bytes ({e}); {part} is "
                                f"kept: run the same command again to resume") from None
            out(f"download interrupted at {done} bytes ({e}); resuming")
    os.replace(part, dest)


class _Interrupted(TinynetError):
    """The transfer stopped before the end; what arrived is in the .part file."""


def _fetch_once(url, part, hint):
    """Bring ``part`` to the full size of ``url`` (append from its size if it exists)."""
    hint = f"; {hint}" if hint else ""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urlopen(Request(url, headers=headers), timeout=TIMEOUT_S)
    except HTTPError as e:
        if e.code == 416 and offset:  # nothing left to send: complete unless sizes differ
            if _content_range(e.headers.get("Content-Range", ""))[2] == offset:
                return
            part.unlink()
            raise _Interrupted("server refused to resume; starting over") from None
        raise DataError(f"{url}: HTTP error {e.code} {e.reason}{hint}") from None
    except (URLError, OSError, http.client.HTTPException) as e:
        reason = getattr(e, "reason", None) or e
        raise DataError(f"cannot download {url} ({reason}){hint}") from None
    with response:
        if response.status == 206:
            start, _, total = _content_range(response.headers.get("Content-Range", ""))
            if start != offset:
                part.unlink()
                raise _Interrupted(f"server resumed at byte {start}, not {offset}; starting over")
        else:  # the whole file: start over
            offset, length = 0, response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        with open(part, "ab" if offset else "wb") as f, \
                tqdm(total=total, initial=offset, unit="B", unit_scale=True,
                     unit_divisor=1024, desc=part.name.removesuffix(".part")) as bar:
            try:
                while chunk := response.read(CHUNK):
                    f.write(chunk)
                    bar.update(len(chunk))
            except (OSError, http.client.HTTPException) as e:
                raise _Interrupted(f"{type(e).__name__}: {e}") from None
            finally:
                f.flush()
                os.fsync(f.fileno())
            if total is not None and f.tell() < total:
                raise _Interrupted(f"connection closed before the end of {total} bytes")


def _content_range(value):
    """(start, end, total) of a Content-Range header; None where absent or '*'."""
    match = re.fullmatch(r"\s*bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)\s*", value)
    if not match:
        return None, None, None
    return tuple(int(v) if v and v.isdigit() else None for v in match.groups())


def _present(data_dir, filename):
    return (data_dir / filename).exists() or (data_dir / filename.removesuffix(".gz")).exists()


def _require(source, files, found, mappings):
    """DataError naming the files of ``files`` that ``source`` lacks, if any."""
    lacking = [f for f in files if f not in found]
    if lacking:
        held = ", ".join(m.removesuffix("-mapping.txt") for m in mappings) or "none"
        raise DataError(f"{source}: has no {', '.join(lacking)} (datasets it holds: {held})")


def _install_file(src, origin, final, sha256, out):
    """Copy stream ``src`` to ``final`` atomically, verifying it before the rename."""
    digest = hashlib.sha256()
    with atomic_write(final) as dst:
        try:
            while chunk := src.read(CHUNK):
                digest.update(chunk)
                dst.write(chunk)
        except (zipfile.BadZipFile, zlib.error, EOFError) as e:
            raise DataError(f"{origin}: corrupt ({e})") from None
        dst.flush()
        if sha256 is None:
            note = f"no published checksum known; {_check_structure(Path(dst.name), origin)}"
        elif digest.hexdigest() != sha256:
            raise DataError(f"{origin}: sha256 mismatch: got {digest.hexdigest()}, published "
                            f"{sha256}; {final.name} not written (damaged or not the official "
                            f"file)")
        else:
            note = "sha256 matches the published checksum"
    out(f"{final}: {note}")


def _check_structure(path, origin):
    """Parse a file that has no known checksum; describe it or raise DataError about ``origin``."""
    try:
        if path.name.endswith("-mapping.txt"):
            return f"mapping parsed ({len(read_mapping(path))} classes)"
        if "-images-idx3-ubyte" in path.name:
            return f"IDX parsed ({len(read_idx_images(path))} images of 28x28)"
        return f"IDX parsed ({len(read_idx_labels(path))} labels)"
    except DataError as e:
        raise DataError(f"{origin}: {str(e).removeprefix(f'{path}: ')}") from None
