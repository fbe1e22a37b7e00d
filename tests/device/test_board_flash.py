# Partition table and block device of the simulated board's flash.
import devtest
from board.compat import IS_MICROPYTHON
from board.sim import flash

MB = 1024 * 1024


def _image(path, size=MB):
    # Blank image written block by block (never one big allocation).
    bs = 4096
    table = flash.pack_table(flash.default_layout(size, bs), bs, size // bs)
    ff = b"\xff" * bs
    with open(path, "wb") as f:
        f.write(table)
        for _ in range(size // bs - 1):
            f.write(ff)


def test_layout_has_the_five_areas_and_fits():
    layout = flash.default_layout(2 * MB)
    names = [n for n, _ in layout]
    assert names == ["loader", "slot_a", "slot_b", "state", "data"]
    assert 1 + sum(n for _, n in layout) == 512
    assert dict(layout)["slot_a"] == dict(layout)["slot_b"]


def test_layout_rejects_odd_or_tiny_sizes():
    devtest.raises(flash.FlashError, flash.default_layout, 512 * 1024)
    devtest.raises(flash.FlashError, flash.default_layout, MB + 100)


def test_table_round_trip():
    layout = flash.default_layout(2 * MB)
    block = flash.pack_table(layout, 4096, 512)
    assert len(block) == 4096
    bs, total, parts = flash.unpack_table(block)
    assert (bs, total) == (4096, 512)
    assert [p[0] for p in parts] == [n for n, _ in layout]
    assert parts[0][1] == 1


def test_corrupt_tables_are_rejected_with_a_reason():
    good = bytearray(flash.pack_table(flash.default_layout(2 * MB), 4096, 512))
    cases = []
    bad_magic = bytearray(good)
    bad_magic[0] ^= 0xFF
    cases.append((bad_magic, "magic"))
    flipped = bytearray(good)
    flipped[30] ^= 0x01
    cases.append((flipped, "corrupt"))
    cases.append((bytearray(b"\xff" * 4096), "magic"))
    cases.append((bytearray(good[:20]), "truncated"))
    cases.append((bytearray(good[:7]), "magic"))
    for block, word in cases:
        e = devtest.raises(flash.FlashError, flash.unpack_table, bytes(block))
        assert word in str(e), str(e)


def test_image_size_must_match_table():
    d = devtest.tmpdir()
    _image(d + "/f.img")
    with open(d + "/f.img", "ab") as f:
        f.write(b"\xff" * 4096)
    e = devtest.raises(flash.FlashError, flash.ImageFile, d + "/f.img")
    assert "size" in str(e)


def test_write_counter_counts_program_and_erase():
    d = devtest.tmpdir()
    _image(d + "/f.img")
    img = flash.ImageFile(d + "/f.img")
    part = img.partition("data")
    part.ioctl(flash.IOCTL_BLOCK_ERASE, 0)
    part.writeblocks(0, b"\x00" * 64, 0)
    assert img.counter.count == 2
    buf = bytearray(64)
    part.readblocks(0, buf, 0)
    assert bytes(buf) == b"\x00" * 64
    part.readblocks(0, buf, 64)
    assert bytes(buf) == b"\xff" * 64
    devtest.raises(OSError, part.readblocks, part.nblocks, buf, 0)
    img.close()


def test_an_arm_file_caught_half_written_is_not_consumed():
    # The host may be between creating the arm file and writing its number when
    # the board checks it. (The likely cause of a CI run under load that waited 30 s
    # for the reboot after an armed cut that was never taken.) An empty or
    # unreadable arm file stays for the next write; a complete one arms the cut and
    # is consumed.
    d = devtest.tmpdir()
    arm = d + "/powercut.arm"
    c = flash.WriteCounter(arm_path=arm, hit_path=d + "/powercut.hit")
    with open(arm, "w") as f:
        f.write("")
    c.before_write()
    assert c.cut_at == 0 and c.count == 1
    with open(arm) as f:  # still there
        assert f.read() == ""
    with open(arm, "w") as f:
        f.write("5")
    c.before_write()
    assert c.cut_at == 1 + 5 and c.count == 2
    devtest.raises(OSError, open, arm)  # consumed


def test_littlefs_mounts_and_keeps_files_across_reopen():
    if not IS_MICROPYTHON:
        devtest.skip("littlefs (vfs.VfsLfs2) exists only on MicroPython")
    import vfs

    d = devtest.tmpdir()
    _image(d + "/f.img")
    img = flash.ImageFile(d + "/f.img")
    for name, _, _ in img.parts:
        flash.mkfs(img.partition(name))
    flash.mount_all(img)
    with open("/state/hello.txt", "w") as f:
        f.write("kept")
    for name, _, _ in img.parts:
        vfs.umount("/" + name)
    img.close()
    img = flash.ImageFile(d + "/f.img")
    flash.mount_all(img, ["state"])
    with open("/state/hello.txt") as f:
        assert f.read() == "kept"
    vfs.umount("/state")


def test_unformatted_partition_is_refused_not_formatted():
    if not IS_MICROPYTHON:
        devtest.skip("littlefs (vfs.VfsLfs2) exists only on MicroPython")
    d = devtest.tmpdir()
    _image(d + "/f.img")
    img = flash.ImageFile(d + "/f.img")
    e = devtest.raises(flash.FlashError, flash.mount_all, img, ["data"])
    assert "refusing to format" in str(e)
    # Still erased: nothing was written.
    assert img.counter.count == 0
