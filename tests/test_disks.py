"""Which directories count as local disks, read from /proc/self/mountinfo lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from crawler.disks import filesystem_type, is_local_disk, mounts

MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:5 - proc proc rw
40 22 0:35 / /mnt/lab rw,relatime shared:20 - nfs4 filer:/lab rw,vers=4.2
41 40 8:17 / /mnt/lab/scratch rw,relatime shared:21 - xfs /dev/sdb1 rw
42 22 0:36 / /mnt/my\\040disk rw,relatime shared:22 - cifs //nas/share rw
43 22 0:37 / /srv rw,relatime shared:23 - fuse.sshfs me@host:/srv rw
44 22 0:38 / /srv rw,relatime shared:24 - tmpfs tmpfs rw
45 22 0:39 / /var/lib/docker/overlay2/x/merged rw - overlay overlay rw,lowerdir=/a
this line is not mountinfo
"""


def test_mount_points_and_types_are_read_with_escapes() -> None:
    found = mounts(MOUNTINFO)
    assert ("/", "ext4") in found
    assert ("/mnt/my disk", "cifs") in found
    assert len(found) == 8  # the line that is not mountinfo is skipped


@pytest.mark.parametrize(
    ("path", "kind", "local"),
    [
        ("/home/me/mirror", "ext4", True),
        ("/mnt/lab/allen", "nfs4", False),
        ("/mnt/lab/scratch/allen", "xfs", True),  # the deepest mount point wins
        ("/mnt/laboratory", "ext4", True),  # /mnt/lab is not a prefix of /mnt/laboratory
        ("/mnt/my disk/allen", "cifs", False),
        ("/srv/allen", "tmpfs", True),  # the later of two mounts on one point is on top
        ("/var/lib/docker/overlay2/x/merged/out", "overlay", True),
    ],
)
def test_the_deepest_mount_decides(path: str, kind: str, local: bool) -> None:
    assert filesystem_type(Path(path), MOUNTINFO) == kind
    assert is_local_disk(Path(path), MOUNTINFO) is local


def test_unknown_means_not_local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert is_local_disk(Path("/anything"), "") is False
    monkeypatch.setattr("crawler.disks.MOUNTINFO", tmp_path / "missing")
    assert filesystem_type(tmp_path) is None
    assert is_local_disk(tmp_path) is False
