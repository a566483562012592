"""kubemirror.envtest.assets: where the binaries come from, without building anything.

Fake assets directories (executable shell scripts named like the binaries) stand in
for the real ones: these tests are about the lookup order and the error messages.
The real build is exercised by ``.ci/run`` (``kubemirror envtest setup``) and every
test that uses the ``real_kube_apiserver`` fixture.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from kubemirror import errors
from kubemirror.envtest import assets


def fake_assets(directory: Path, names: tuple[str, ...] = ("kube-apiserver", "etcd")) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = directory / name
        path.write_text("#!/bin/sh\nexit 0\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return directory


@pytest.fixture
def no_assets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty cache and no $KUBEBUILDER_ASSETS; returns the cache root."""
    monkeypatch.delenv(assets.ASSETS_ENV, raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setenv(assets.CACHE_ENV, str(cache))
    return cache


def test_pinned_versions_come_from_the_shipped_go_mod() -> None:
    versions = assets.pinned_versions()
    assert versions.kubernetes.startswith("v1.")
    assert versions.etcd.startswith("v3.")
    go_mod = (assets.GO_MODULE_DIR / "go.mod").read_text()
    # every staging module is pinned at the release matching k8s.io/kubernetes
    staging = "v0." + versions.kubernetes.removeprefix("v1.")
    assert f"k8s.io/client-go => k8s.io/client-go {staging}" in go_mod
    assert (assets.GO_MODULE_DIR / "go.sum").stat().st_size > 0
    key = versions.cache_key
    assert key.startswith(f"k8s-{versions.kubernetes}-etcd-{versions.etcd}-")
    assert len(key.rsplit("-", 1)[1]) == 8  # the build recipe's hash


def test_the_cache_key_changes_with_the_build_recipe(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    before = assets.pinned_versions().cache_key
    copy = tmp_path / "gobuild"
    (copy / "etcd").mkdir(parents=True)
    for name in ("go.mod", "go.sum", "etcd/main.go"):
        (copy / name).write_bytes((assets.GO_MODULE_DIR / name).read_bytes())
    monkeypatch.setattr(assets, "GO_MODULE_DIR", copy)
    assert assets.pinned_versions().cache_key == before
    (copy / "go.sum").write_bytes((copy / "go.sum").read_bytes() + b"\n")
    assert assets.pinned_versions().cache_key != before


def test_kubebuilder_assets_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_assets: Path
) -> None:
    fake_assets(no_assets / assets.pinned_versions().cache_key)
    named = fake_assets(tmp_path / "mine")
    monkeypatch.setenv(assets.ASSETS_ENV, str(named))
    found = assets.find_assets()
    assert found is not None
    assert (found.directory, found.source) == (named, assets.ASSETS_ENV)
    assert found.kube_apiserver == named / "kube-apiserver"
    assert found.etcd == named / "etcd"


def test_kubebuilder_assets_without_a_binary_is_an_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_assets: Path
) -> None:
    named = fake_assets(tmp_path / "half", names=("kube-apiserver",))
    monkeypatch.setenv(assets.ASSETS_ENV, str(named))
    with pytest.raises(errors.ConfigError, match="without etcd") as caught:
        assets.find_assets()
    assert caught.value.field == assets.ASSETS_ENV
    assert caught.value.expression == str(named)


def test_cache_is_used_when_kubebuilder_assets_is_unset(no_assets: Path) -> None:
    cached = fake_assets(no_assets / assets.pinned_versions().cache_key)
    found = assets.find_assets()
    assert found is not None
    assert (found.directory, found.source) == (cached, "cache")
    assert assets.setup_assets(build=False) == found


def test_a_cache_of_another_release_is_not_used(no_assets: Path) -> None:
    fake_assets(no_assets / "k8s-v1.0.0-etcd-v3.0.0")
    assert assets.find_assets() is None


def test_non_executable_binaries_do_not_count(no_assets: Path) -> None:
    cached = fake_assets(no_assets / assets.pinned_versions().cache_key)
    (cached / "etcd").chmod(0o644)
    assert assets.find_assets() is None


def test_nothing_found_and_no_build_says_how_to_fix_it(no_assets: Path) -> None:
    with pytest.raises(errors.CommandError) as caught:
        assets.setup_assets(build=False)
    assert "KUBEBUILDER_ASSETS is unset" in caught.value.message
    assert str(no_assets) in caught.value.message
    assert "kubemirror envtest setup" in caught.value.hint


def test_nothing_found_and_no_go_on_path_says_how_to_fix_it(
    monkeypatch: pytest.MonkeyPatch, no_assets: Path, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(errors.CommandError, match="no kube-apiserver/etcd binaries") as caught:
        assets.setup_assets()
    assert "install Go" in caught.value.hint


def test_a_failing_go_build_names_the_binary_and_keeps_the_cache_clean(
    monkeypatch: pytest.MonkeyPatch, no_assets: Path, tmp_path: Path
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    go = bin_dir / "go"
    go.write_text('#!/bin/sh\n[ "$1" = env ] && { echo go1.99; exit 0; }\n'
                  'echo "cannot reach the module proxy" >&2\nexit 3\n')
    go.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    lines: list[str] = []
    with pytest.raises(errors.CommandError, match="go build of kube-apiserver failed") as caught:
        assets.setup_assets(log=lines.append)
    assert "exit 3" in caught.value.message
    assert "cannot reach the module proxy" in caught.value.message
    assert lines == [f"building kube-apiserver {assets.pinned_versions().kubernetes} with go1.99 "
                     "(first time only)"]
    # neither the target nor a staging directory is left behind
    assert [p.name for p in no_assets.iterdir()] == [
        f".{assets.pinned_versions().cache_key}.lock"
    ]


def test_a_go_build_fills_the_cache_atomically(
    monkeypatch: pytest.MonkeyPatch, no_assets: Path, tmp_path: Path
) -> None:
    """A stand-in ``go`` writes the ``-o`` target, as the real one does; the built
    directory appears under the cache key only once both binaries exist."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    go = bin_dir / "go"
    go.write_text(
        '#!/bin/sh\n[ "$1" = env ] && { echo go1.99; exit 0; }\n'
        'while [ "$1" != "-o" ]; do shift; done\n'
        'printf "#!/bin/sh\\necho %s\\n" "$3" > "$2"; chmod +x "$2"\n'
    )
    go.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    built = assets.setup_assets(log=lambda line: None)
    assert built.source == "built"
    assert built.directory == no_assets / assets.pinned_versions().cache_key
    assert "k8s.io/kubernetes/cmd/kube-apiserver" in built.kube_apiserver.read_text()
    assert "./etcd" in built.etcd.read_text()
    again = assets.setup_assets(log=lambda line: None)
    assert (again.directory, again.source) == (built.directory, "cache")
