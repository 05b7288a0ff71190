"""A site goes dark (issue 17): the rest of the fleet must not wait for it.

The issue's scenario, against the emulator with ``syncd run`` as a
subprocess: 60 devices, concurrency 8, request timeout 3 s, resync 4 s; 24
devices hang (they accept every request and never answer, as a powered-down
site behind a router does). Five healthy devices changed by hand are each put
back within one resync + 3 s; the dark devices are reported unreachable; when
the site comes back, every dark device (changed while it was dark) converges
within three resyncs.
"""

from __future__ import annotations

import time

from tests.faults.helpers import converged, named, run_args, stamp, tree, wait_until

DEVICES, DARK, CONCURRENCY, TIMEOUT, RESYNC = 60, 24, 8, 3.0, 4.0


def _corrected_after(dev, since: float) -> float | None:
    """Seconds from ``since`` until the first PUT accepted after it was answered, if any."""
    for entry in dev.journal:
        if entry.method == "PUT" and entry.status == 200 and entry.started >= since:
            return entry.finished - since
    return None


class TestDarkSite:
    def test_healthy_devices_are_served_while_a_site_is_dark(self, sim, daemon, tmp_path):
        """With 24 of 60 devices hanging, 5 healthy devices drifted by hand are each corrected within resync + 3 s, all 24 are reported unreachable, and all 24 converge within three resyncs once they answer again."""
        fleet = sim(devices=DEVICES)
        root = tree(tmp_path / "desired", fleet)
        settings = ("--concurrency", str(CONCURRENCY), "--request-timeout", str(TIMEOUT))
        proc = daemon(*run_args(root, tmp_path / "state", *settings, resync=RESYNC))
        names = {n: f"Door {n}" for n in range(1, DEVICES + 1)}
        wait_until(
            lambda: all(converged(d, names[n]) for n, d in enumerate(fleet.devices, start=1)),
            60,
            "the fleet converged",
        )
        dark = fleet.devices[:DARK]
        hung_at = time.time()
        for dev in dark:
            dev.inject(kind="hang", count=None)
            dev.set_live(1, displayName="Factory")  # seen once the device answers again

        # Five healthy devices changed by hand, from the first second of the outage on.
        healthy = [fleet.devices[n - 1] for n in (27, 35, 43, 51, 59)]
        drifted = []
        for dev in healthy:
            time.sleep(1.5)
            dev.set_live(1, displayName="Hacked")
            drifted.append((dev, time.time()))
        wait_until(
            lambda: all(converged(d, names[d.number]) for d, _ in drifted),
            RESYNC * 1.1 + TIMEOUT + 5,
            "the drifted healthy devices corrected",
        )
        took = [_corrected_after(dev, at) for dev, at in drifted]
        print(f"healthy drift corrected after {[round(t or -1, 2) for t in took]} s")
        assert all(t is not None and t < RESYNC + 3 for t in took), took

        dark_names = {f"dev{d.number}" for d in dark}

        def reported() -> set[str]:
            return {
                e["device"]
                for e in named(proc.events, "device.unreachable")
                if stamp(e) >= hung_at and e["device"] in dark_names
            }

        wait_until(lambda: reported() == dark_names, 40, "every dark device reported")
        assert {e["kind"] for e in named(proc.events, "device.unreachable")} == {"transport"}
        healthy_names = {f"dev{n}" for n in range(DARK + 1, DEVICES + 1)}
        assert not any(
            e.get("device") in healthy_names for e in named(proc.events, "device.unreachable")
        )

        for dev in dark:
            dev.clear_faults()
        back = wait_until(
            lambda: all(converged(d, names[d.number]) for d in dark),
            3 * RESYNC * 1.1 + 5,
            "the dark site converged",
        )
        print(f"dark site converged {back:.1f} s after it answered again")
        assert back < 3 * RESYNC
        assert proc.stop() == 0
