//! Regular files skip chown and chmod only when the kernel already gave them
//! the entry's owner and mode; the cached parent directory never outlives
//! an entry that could change what its path names. Root: ownership is real.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::{WhiteoutMode, apply_layer};

struct Tar(tar::Builder<Vec<u8>>);

impl Tar {
    fn new() -> Tar {
        Tar(tar::Builder::new(Vec::new()))
    }

    fn entry(mut self, name: &str, kind: tar::EntryType, mode: u32, owner: (u64, u64)) -> Self {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(owner.0);
        h.set_gid(owner.1);
        h.set_mtime(1_600_000_000);
        let data = name.as_bytes();
        if kind == tar::EntryType::Regular {
            h.set_size(data.len() as u64);
            self.0.append_data(&mut h, name, data).unwrap();
        } else {
            h.set_size(0);
            self.0.append_data(&mut h, name, &[][..]).unwrap();
        }
        self
    }

    fn file(self, name: &str, mode: u32, owner: (u64, u64)) -> Self {
        self.entry(name, tar::EntryType::Regular, mode, owner)
    }

    fn dir(self, name: &str, mode: u32, owner: (u64, u64)) -> Self {
        self.entry(name, tar::EntryType::Directory, mode, owner)
    }

    fn symlink(mut self, name: &str, target: &str) -> Self {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_size(0);
        self.0.append_link(&mut h, name, target).unwrap();
        self
    }

    fn apply(self, dest: &Path) {
        let data = self.0.into_inner().unwrap();
        apply_layer(&data[..], dest, WhiteoutMode::Overlay, None).unwrap();
    }

    fn apply_err(self, dest: &Path) -> super::UnpackError {
        let data = self.0.into_inner().unwrap();
        apply_layer(&data[..], dest, WhiteoutMode::Overlay, None).unwrap_err()
    }
}

fn meta(p: &Path) -> (u32, u32, u32) {
    let m = std::fs::symlink_metadata(p).unwrap();
    (m.permissions().mode() & 0o7777, m.uid(), m.gid())
}

#[test]
fn files_get_the_entrys_owner_and_mode_whatever_the_umask_and_the_directory() {
    kontti_testutil::require_root();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    Tar::new()
        .file("plain", 0o644, (0, 0))
        .file("wide", 0o666, (0, 0))
        .file("private", 0o600, (0, 0))
        .file("owned", 0o640, (1000, 1001))
        .file("suid", 0o4755, (0, 0))
        .file("sgid", 0o2755, (0, 50))
        .file("sticky", 0o1644, (0, 0))
        .file("nowrite", 0o444, (0, 0))
        // A setgid directory hands its group to new files: a file that asks
        // for group 0 inside it must still get 0.
        .dir("shared/", 0o2775, (0, 50))
        .file("shared/root-group", 0o644, (0, 0))
        .file("shared/its-group", 0o664, (0, 50))
        .apply(d);
    let expect = [
        ("plain", (0o644, 0, 0)),
        ("wide", (0o666, 0, 0)),
        ("private", (0o600, 0, 0)),
        ("owned", (0o640, 1000, 1001)),
        ("suid", (0o4755, 0, 0)),
        ("sgid", (0o2755, 0, 50)),
        ("sticky", (0o1644, 0, 0)),
        ("nowrite", (0o444, 0, 0)),
        ("shared", (0o2775, 0, 50)),
        ("shared/root-group", (0o644, 0, 0)),
        ("shared/its-group", (0o664, 0, 50)),
    ];
    for (name, want) in expect {
        assert_eq!(meta(&d.join(name)), want, "{name}");
    }
    assert_eq!(
        std::fs::read_to_string(d.join("nowrite")).unwrap(),
        "nowrite"
    );
    let mtime = std::fs::metadata(d.join("wide")).unwrap().mtime();
    assert_eq!(mtime, 1_600_000_000);
}

#[test]
fn the_cached_parent_directory_follows_what_entries_do_to_its_path() {
    kontti_testutil::require_root();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    Tar::new()
        .file("a/1", 0o644, (0, 0))
        .file("b/1", 0o644, (0, 0))
        .file("a/2", 0o644, (0, 0))
        // The directory holding the last file becomes a symlink: the next
        // file goes where the link leads (inside the root), not into the
        // removed directory.
        .file("c/1", 0o644, (0, 0))
        .symlink("c", "/elsewhere")
        .file("c/2", 0o644, (0, 0))
        // A file replaces a directory of the same name.
        .file("e/inner", 0o644, (0, 0))
        .file("e", 0o644, (0, 0))
        .apply(d);
    for f in ["a/1", "a/2", "b/1", "elsewhere/2"] {
        assert_eq!(
            std::fs::read_to_string(d.join(f)).unwrap(),
            f.replace("elsewhere", "c")
        );
    }
    assert!(std::fs::symlink_metadata(d.join("c")).unwrap().is_symlink());
    assert!(!d.join("elsewhere/1").exists());
    assert!(std::fs::metadata(d.join("e")).unwrap().is_file());
}

#[test]
fn a_kept_directory_replaced_by_a_file_is_not_written_into() {
    kontti_testutil::require_root();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // r/d is kept open after r/d/1; r/d then becomes a file, so r/d/2 has
    // no directory to go to, and must not land in the removed one.
    let err = Tar::new()
        .file("r/d/1", 0o644, (0, 0))
        .file("r/x", 0o644, (0, 0))
        .file("r/d", 0o644, (0, 0))
        .file("r/d/2", 0o644, (0, 0))
        .apply_err(d);
    assert!(err.to_string().contains("is not a directory"), "{err}");
    assert!(std::fs::metadata(d.join("r/d")).unwrap().is_file());
}
