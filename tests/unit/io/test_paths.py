"""anon_dicom_path rewriting onto dicom_root, and refusal of paths that leave it."""

import posixpath

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from embedpatch.io.paths import inside_root, normalize_paths, rewrite_paths, root_prefix

NAS = "/mnt/NAS2/mammo/anon_dicom/"
ROOT = "/data/embed"


def resolve(paths, root=ROOT, rewrite=((NAS, "/data/embed/"),)):
    local = rewrite_paths(pa.array(paths, pa.string()), root, rewrite)
    return local.to_pylist(), inside_root(local, root).to_pylist()


def reference(path, root, rewrite):
    """The rule spelled out one path at a time."""
    for source, target in rewrite:
        if path.startswith(source):
            path = target + path[len(source) :]
            break
    else:
        if not path.startswith("/"):
            path = posixpath.join(root, path)
    return posixpath.normpath(path)


def test_first_matching_prefix_wins():
    rewrite = ((NAS + "cohort_1/", "/fast/c1/"), (NAS, "/data/embed/"), (NAS, "/never/"))
    local, _ = resolve([NAS + "cohort_1/1/a.dcm", NAS + "cohort_2/2/b.dcm"], "/", rewrite)
    assert local == ["/fast/c1/1/a.dcm", "/data/embed/cohort_2/2/b.dcm"]


def test_relative_paths_unmatched_are_taken_under_the_root():
    local, inside = resolve(["cohort_1/1/a.dcm", "./x//y.dcm"])
    assert local == ["/data/embed/cohort_1/1/a.dcm", "/data/embed/x/y.dcm"]
    assert inside == [True, True]


def test_absolute_paths_unmatched_stay_and_are_refused_outside_the_root():
    local, inside = resolve(["/elsewhere/a.dcm", "/data/embed/a.dcm"], rewrite=())
    assert local == ["/elsewhere/a.dcm", "/data/embed/a.dcm"]
    assert inside == [False, True]


def test_dot_dot_escapes_are_refused():
    paths = [
        NAS + "../../../etc/passwd",
        NAS + "cohort_1/../../x.dcm",
        "../embed2/a.dcm",
        "a/../../a.dcm",
        NAS + "cohort_1/../cohort_2/a.dcm",
    ]
    local, inside = resolve(paths)
    assert inside == [False, False, False, False, True]
    assert local[0] == "/etc/passwd"
    assert local[-1] == "/data/embed/cohort_2/a.dcm"


def test_sibling_folder_sharing_the_root_name_is_outside():
    _, inside = resolve(["/data/embed2/a.dcm", "/data/embed"], rewrite=())
    assert inside == [False, False]


def test_root_spelling_does_not_matter():
    for root in ("/data/embed/", "/data//embed", "/data/x/../embed"):
        assert root_prefix(root) == "/data/embed/"
        assert resolve(["a.dcm"], root=root) == (["/data/embed/a.dcm"], [True])
    assert root_prefix("/") == "/"
    assert root_prefix("./") == ""


def test_relative_root_stays_relative():
    local, inside = resolve(
        ["a/b.dcm", NAS + "c.dcm"], "results/demo/images", ((NAS, "results/demo/images/"),)
    )
    assert local == ["results/demo/images/a/b.dcm", "results/demo/images/c.dcm"]
    assert inside == [True, True]


def test_null_paths_stay_null_and_are_not_inside():
    local, inside = resolve([None, NAS + "a.dcm"])
    assert local == [None, "/data/embed/a.dcm"]
    assert inside == [False, True]


def test_normalize_matches_normpath_and_leaves_clean_paths_alone():
    paths = ["/a/b", "/a//b/", "a/./b/../c", "//a", "/", "/..", "x/.."]
    assert normalize_paths(pa.array(paths)).to_pylist() == [posixpath.normpath(p) for p in paths]
    clean = pa.array(["/a/b.dcm", "c/d"])
    assert normalize_paths(clean) is clean


segment = st.sampled_from(["..", ".", "", "a", "b", "embed", "data", "mnt", "a.dcm", "..a"])
path_text = st.builds(
    lambda absolute, parts: ("/" if absolute else "") + "/".join(parts),
    st.booleans(),
    st.lists(segment, max_size=8),
)
roots = path_text.filter(lambda root: root and not root.startswith("//"))
rewrites = st.lists(st.tuples(path_text, path_text.filter(bool)), max_size=3)


def below(path, root):
    """Oracle: `path` names something strictly inside `root` (both relative to one cwd).

    Without asking the filesystem for the cwd, a relative path is not known to be
    inside an absolute root (nor the reverse); a path starting with exactly two
    slashes (kept by normpath, implementation-defined in POSIX) is not trusted either.
    """
    if posixpath.isabs(path) != posixpath.isabs(root) or path.startswith("//"):
        return False
    cwd = "/cwd" * 40  # deeper than any generated path climbs
    relative = posixpath.relpath(posixpath.join(cwd, path), posixpath.join(cwd, root))
    return relative != "." and relative.split("/")[0] != ".."


@given(paths=st.lists(path_text, max_size=20), root=roots, rewrite=rewrites)
def test_every_accepted_path_lies_under_the_root(paths, root, rewrite):
    rewrite = [(source, target) for source, target in rewrite if source]
    local, inside = resolve(paths, root, rewrite)
    assert local == [reference(path, root, rewrite) for path in paths]
    # Sound: nothing outside the root is accepted. Complete, except that a relative
    # path is provably under a root starting with '..' only if it climbs there too.
    complete = not posixpath.normpath(root).startswith("..")
    for path, accepted in zip(local, inside, strict=True):
        assert below(path, root) if accepted else not (complete and below(path, root))
    assert all(path == posixpath.normpath(path) for path in local if path)


def test_working_directory_root_accepts_relative_paths_that_stay_in_it():
    local, inside = resolve(["a.dcm", "./b/c.dcm", "../x.dcm", "/abs.dcm", "."], ".", ())
    assert local == ["a.dcm", "b/c.dcm", "../x.dcm", "/abs.dcm", "."]
    assert inside == [True, True, False, False, False]


@given(
    depth=st.integers(1, 6),
    ups=st.integers(1, 8),
    tail=st.lists(st.sampled_from(["a", "etc", "."]), max_size=3),
)
def test_dot_dot_tricks_escaping_the_root_are_refused(depth, ups, tail):
    inner = "/".join(["d"] * depth)
    path = NAS + inner + "/.." * ups + "/" + "/".join([*tail, "x.dcm"])
    local, inside = resolve([path])
    assert inside == [ups <= depth]
    assert local[0].startswith("/data/embed/") == (ups <= depth)


BUCKET = "s3://embed-dataset-open/images"


def test_object_store_roots_keep_their_scheme():
    rewrite = ((NAS, f"{BUCKET}/"),)
    paths = [NAS + "cohort_1/1/a.dcm", "cohort_2//2/./b.dcm", NAS + "../../etc/x.dcm"]
    local, inside = resolve(paths, BUCKET, rewrite)
    assert local == [f"{BUCKET}/cohort_1/1/a.dcm", f"{BUCKET}/cohort_2/2/b.dcm", "s3://etc/x.dcm"]
    assert inside == [True, True, False]


def test_a_local_path_is_outside_an_object_store_root():
    local, inside = resolve(["/mnt/other/a.dcm", "s3://other-bucket/images/a.dcm"], BUCKET, ())
    assert local == ["/mnt/other/a.dcm", "s3://other-bucket/images/a.dcm"]
    assert inside == [False, False]
    assert root_prefix(BUCKET + "//") == BUCKET + "/"
