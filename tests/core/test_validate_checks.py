"""``syncd validate``'s checks beyond one file's schema: caFiles, wave globs, special names."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from core_helpers import device

from syncd.commands import validate
from syncd.simulator.certificate import ensure_certificate

Tree = Callable[[Mapping[str, str | bytes]], Path]


def check(
    root: Path, capsys: pytest.CaptureFixture[str], *, resolve: bool = False
) -> tuple[int, list[str]]:
    """Run validate on ``root``: its exit status and its output lines."""
    status = validate(desired_dir=root, devices=[], resolve_secrets=resolve)
    return status, capsys.readouterr().out.splitlines()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A self-signed PEM certificate (the emulator's), as text."""
    cert, _ = ensure_certificate(tmp_path_factory.mktemp("cert"), hosts=["127.0.0.1"])
    return cert.read_text()


def with_ca(ca_file: str) -> str:
    """A device file whose ``caFile`` (``ca_file``) is on line 4."""
    return device(extra=f"tls:\n  caFile: {ca_file}\n")


class TestCaFile:
    @pytest.mark.parametrize(
        ("rel", "content", "reason"),
        [
            ("certs/missing.pem", None, "does not exist"),
            ("certs", None, "is a directory"),
            ("certs/sip.pw", "s3cret-not-a-cert\n", "holds no PEM certificate"),
        ],
    )
    def test_a_relative_ca_file_that_cannot_serve_is_an_error_at_its_line(
        self,
        tree: Tree,
        capsys: pytest.CaptureFixture[str],
        rel: str,
        content: str | None,
        reason: str,
    ) -> None:
        """A caFile in the desired dir that is missing, a directory or no certificate fails validate at the caFile's line, never showing the file's content."""
        files: dict[str, str | bytes] = {"a.yaml": with_ca(rel), "certs/keep.txt": "x"}
        if content is not None:
            files[rel] = content
        status, lines = check(tree(files), capsys)
        assert status == 1
        assert lines[0] == f"a.yaml:4: device.tls.caFile: {rel} {reason}", lines
        assert not any("s3cret" in line for line in lines)

    def test_a_good_ca_file_and_verify_off_pass(
        self, tree: Tree, capsys: pytest.CaptureFixture[str], certificate: str
    ) -> None:
        """A caFile holding a certificate passes; with verify: false the caFile is not used nor checked."""
        root = tree(
            {
                "a.yaml": with_ca("certs/ca.pem"),
                "certs/ca.pem": certificate,
                "b.yaml": device(
                    url="https://192.0.2.11", extra="tls:\n  verify: false\n  caFile: nope.pem\n"
                ),
            }
        )
        status, lines = check(root, capsys)
        assert status == 0, lines

    def test_a_ca_file_from_defaults_is_reported_once_at_the_defaults_line(
        self, tree: Tree, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A bad caFile written in _defaults.yaml is one error at its line there, not one per device."""
        root = tree(
            {
                "site/_defaults.yaml": "device:\n  tls:\n    caFile: /etc/passwd\n",
                "site/a.yaml": device(),
                "site/b.yaml": device(url="https://192.0.2.11"),
            }
        )
        status, lines = check(root, capsys)
        assert status == 1
        expected = "site/_defaults.yaml:3: device.tls.caFile: /etc/passwd holds no PEM certificate"
        assert lines[:-1] == [expected], lines

    def test_a_missing_absolute_ca_file_is_checked_with_resolve_secrets(
        self, tree: Tree, capsys: pytest.CaptureFixture[str], tmp_path: Path
    ) -> None:
        """An absolute caFile missing here may be on the management host: an error only with --resolve-secrets (CI has no host files)."""
        missing = tmp_path / "etc" / "intercom-ca.pem"
        root = tree({"a.yaml": with_ca(str(missing))})
        status, lines = check(root, capsys)
        assert status == 0, lines
        status, lines = check(root, capsys, resolve=True)
        assert status == 1
        assert lines[0] == f"a.yaml:4: device.tls.caFile: {missing} does not exist", lines


FLEET = """\
rollout:
  waves:
    - name: canary
      devices: ["lab/*", "site-a/lobby"]
    - name: rest
"""


class TestWaveGlobs:
    def test_a_glob_matching_no_device_is_a_warning_naming_wave_and_pattern(
        self, tree: Tree, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A wave glob that matches no device is a warning at its line (validate still exits 0); one matching a device is quiet."""
        root = tree({"_fleet.yaml": FLEET, "site-a/lobby.yaml": device()})
        status, lines = check(root, capsys)
        assert status == 0, lines
        assert lines[:-1] == [
            "warning: _fleet.yaml:4: rollout.waves[0].devices[0]: wave 'canary': "
            "'lab/*' matches no device"
        ]

    def test_a_device_in_an_invalid_file_counts_as_matched(
        self, tree: Tree, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A glob matching only a file that failed validation is not called a typo."""
        root = tree(
            {
                "_fleet.yaml": FLEET,
                "site-a/lobby.yaml": device(),
                "lab/one.yaml": device(url="https://192.0.2.11", extra="mdoe: x\n"),
            }
        )
        status, lines = check(root, capsys)
        assert status == 1
        assert not any("matches no device" in line for line in lines), lines

    def test_a_glob_wave_whose_devices_an_earlier_wave_takes_is_a_warning(
        self, tree: Tree, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A wave whose globs match only devices a wave before it took never gets a device:
        a warning at the wave naming the earlier one; a wave with one device left is quiet."""
        fleet = (
            'rollout:\n  waves:\n    - name: canary\n      devices: ["lab/*"]\n'
            "    - name: again\n      devices: [lab/one]\n"
            '    - name: mixed\n      devices: ["lab/*", site-a/lobby]\n'
        )
        root = tree(
            {
                "_fleet.yaml": fleet,
                "lab/one.yaml": device(url="https://192.0.2.11"),
                "site-a/lobby.yaml": device(),
            }
        )
        status, lines = check(root, capsys)
        assert status == 0, lines
        assert lines[:-1] == [
            "warning: _fleet.yaml:5: rollout.waves[1]: wave 'again' never gets a device: "
            "every device it matches is in wave 'canary' before it"
        ]


class TestDenyWindows:
    @pytest.mark.parametrize(
        "window",
        [
            "deny: {}",
            "deny: {timezone: Europe/Prague}",
            'deny: {days: [mon, tue, wed, thu, fri, sat, sun], from: "00:00", to: "24:00"}',
        ],
    )
    def test_a_deny_window_open_all_week_is_a_warning_at_its_line(
        self, tree: Tree, capsys: pytest.CaptureFixture[str], window: str
    ) -> None:
        """A deny window open every day, all day (deny: {} included) blocks every rollout: a warning at its line."""
        root = tree({"_fleet.yaml": f"windows:\n  - {window}\n", "a.yaml": device()})
        status, lines = check(root, capsys)
        assert status == 0, lines
        (warning,) = lines[:-1]
        assert warning.startswith("warning: _fleet.yaml:2: windows[0].deny: this deny window "), (
            warning
        )
        assert "no rollout runs" in warning and "syncd rollout pause" in warning

    def test_a_deny_window_with_days_or_hours_is_quiet(
        self, tree: Tree, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A deny window on some days or some hours, and an allow window with defaults, warn of nothing."""
        fleet = (
            'windows:\n  - deny: {days: [sat, sun]}\n  - deny: {from: "08:00", to: "18:00"}\n'
            "  - allow: {}\n"
        )
        status, lines = check(tree({"_fleet.yaml": fleet, "a.yaml": device()}), capsys)
        assert status == 0 and len(lines) == 1, lines


class TestSpecialNamesAsDirectories:
    @pytest.mark.parametrize(
        "folder", ["_defaults.yaml", "site/_defaults.yaml", "_fleet.yaml", "site/_fleet.yaml"]
    )
    def test_a_directory_named_like_a_special_file_is_an_error(
        self, tree: Tree, capsys: pytest.CaptureFixture[str], folder: str
    ) -> None:
        """A directory named _defaults.yaml or _fleet.yaml, anywhere, is one error naming it; the files in it are not read as devices."""
        root = tree({"a.yaml": device(), f"{folder}/b.yaml": device(url="https://192.0.2.11")})
        status, lines = check(root, capsys)
        assert status == 1
        name = folder.rsplit("/", 1)[-1]
        assert lines[:-1] == [f"{folder}:1: cannot read: is a directory; {name} must be a file"]
