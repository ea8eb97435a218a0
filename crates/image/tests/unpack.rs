//! Safe unpacking: every escape class is first shown to escape a naive
//! extractor in a scratch directory, then refused by kontti with nothing
//! written outside the layer directory.

mod common;

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};

use common::{Tar, gzip};
use kontti_image::hash::sha256;
use kontti_image::unpack::{UnpackError, WhiteoutMode, apply_layer};

/// A scratch directory with `layer/` (where extraction goes) and
/// `outside/` (which must stay untouched), plus a `secret` file outside.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("layer")).unwrap();
        fs::create_dir(dir.path().join("outside")).unwrap();
        fs::write(dir.path().join("outside/secret"), "host secret").unwrap();
        Scratch { dir }
    }
    fn layer(&self) -> PathBuf {
        self.dir.path().join("layer")
    }
    fn outside(&self) -> PathBuf {
        self.dir.path().join("outside")
    }
    fn outside_entries(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.outside())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
    /// Whether something under `layer/` is the host's secret (a hard link
    /// to it or a copy of it through a link).
    fn layer_links_secret(&self) -> bool {
        let secret = fs::metadata(self.outside().join("secret")).unwrap();
        walk(&self.layer()).iter().any(|p| {
            fs::symlink_metadata(p)
                .is_ok_and(|m| m.ino() == secret.ino() && m.dev() == secret.dev())
        })
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            out.push(p.clone());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(walk(&p));
            }
        }
    }
    out
}

/// What a careless extractor does: join names onto the destination and
/// let the filesystem follow whatever it meets.
fn naive_extract(r: impl Read, dest: &Path) {
    let mut a = tar::Archive::new(r);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let p = dest.join(&*e.path().unwrap());
        let link = e.link_name().unwrap().map(|l| l.into_owned());
        let _ = match e.header().entry_type() {
            tar::EntryType::Directory => fs::create_dir_all(&p),
            tar::EntryType::Symlink => symlink(link.unwrap(), &p),
            tar::EntryType::Link => fs::hard_link(dest.join(link.unwrap()), &p),
            _ => fs::File::create(&p).and_then(|mut f| io::copy(&mut e, &mut f).map(|_| ())),
        };
    }
}

fn kontti_extract(r: impl Read, dest: &Path) -> Result<(), UnpackError> {
    apply_layer(r, dest, WhiteoutMode::Remove, None).map(|_| ())
}

/// Runs the tarball through the naive extractor (must escape) and through
/// kontti (must be refused, nothing outside changed).
fn assert_escape_refused(tar: &[u8], escaped: impl Fn(&Scratch) -> bool) -> UnpackError {
    let naive = Scratch::new();
    naive_extract(tar, &naive.layer());
    assert!(
        escaped(&naive),
        "the hostile tarball should escape a naive extractor"
    );

    let s = Scratch::new();
    let err = kontti_extract(tar, &s.layer()).expect_err("kontti must refuse the tarball");
    assert!(!escaped(&s), "kontti let an entry escape");
    assert_eq!(s.outside_entries(), vec!["secret"]);
    assert_eq!(
        fs::read_to_string(s.outside().join("secret")).unwrap(),
        "host secret"
    );
    assert_eq!(err.kind(), kontti_core::ErrorKind::Invalid, "{err}");
    err
}

fn pwned(s: &Scratch) -> bool {
    s.outside().join("pwned").exists()
}

#[test]
fn dotdot_entry_is_refused() {
    let tar = Tar::new().file("../outside/pwned", b"x", 0o644).finish();
    let e = assert_escape_refused(&tar, pwned);
    assert!(e.to_string().contains("'..' climbs above the root"), "{e}");
}

#[test]
fn absolute_entry_is_refused() {
    // The scratch path differs per run, so build the tarball per scratch.
    let naive = Scratch::new();
    let abs = naive.outside().join("pwned");
    let tar = Tar::new().file(abs.to_str().unwrap(), b"x", 0o644).finish();
    naive_extract(&tar[..], &naive.layer());
    assert!(pwned(&naive), "absolute names escape a naive extractor");

    let s = Scratch::new();
    let abs = s.outside().join("pwned");
    let tar = Tar::new().file(abs.to_str().unwrap(), b"x", 0o644).finish();
    let e = kontti_extract(&tar[..], &s.layer()).unwrap_err();
    assert!(e.to_string().contains("it is absolute"), "{e}");
    assert!(!pwned(&s));
}

#[test]
fn symlink_escape_is_refused() {
    let tar = Tar::new()
        .symlink("link", "../outside")
        .file("link/pwned", b"x", 0o644)
        .finish();
    let e = assert_escape_refused(&tar, pwned);
    assert!(
        e.to_string()
            .contains("symbolic link climbs above the root"),
        "{e}"
    );
}

#[test]
fn nested_symlink_escape_is_refused() {
    let tar = Tar::new()
        .dir("a/", 0o755)
        .dir("a/b/", 0o755)
        .symlink("a/b/up", "../../..")
        .file("a/b/up/outside/pwned", b"x", 0o644)
        .finish();
    assert_escape_refused(&tar, pwned);
}

#[test]
fn hardlink_escape_is_refused() {
    let tar = Tar::new().hardlink("stolen", "../outside/secret").finish();
    let e = assert_escape_refused(&tar, Scratch::layer_links_secret);
    assert!(matches!(e, UnpackError::BadHardLink { .. }), "{e}");
}

#[test]
fn hardlink_through_symlink_escape_is_refused() {
    let tar = Tar::new()
        .symlink("link", "../outside")
        .hardlink("stolen", "link/secret")
        .finish();
    assert_escape_refused(&tar, Scratch::layer_links_secret);
}

/// A reader that serves at most 512 bytes per read and, when the reader
/// passes `at`, replaces `layer/d` with a symlink leading out: a symlink
/// swapped in mid-extraction by someone racing the unpack.
struct SwappingReader<'a> {
    data: &'a [u8],
    pos: usize,
    at: usize,
    layer: PathBuf,
    swapped: bool,
}

impl Read for SwappingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.swapped && self.pos >= self.at {
            self.swapped = true;
            let d = self.layer.join("d");
            fs::remove_dir_all(&d).unwrap();
            symlink("../outside", &d).unwrap();
        }
        let n = buf.len().min(512).min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[test]
fn symlink_swapped_in_mid_extraction_is_refused() {
    // Entry 1 creates directory d; before entry 2 ("d/pwned") is read, the
    // directory is replaced by a symlink to ../outside.
    let tar = Tar::new()
        .dir("d/", 0o755)
        .file("d/pwned", b"x", 0o644)
        .finish();
    let naive = Scratch::new();
    naive_extract(
        SwappingReader {
            data: &tar,
            pos: 0,
            at: 512,
            layer: naive.layer(),
            swapped: false,
        },
        &naive.layer(),
    );
    assert!(pwned(&naive), "the swap should fool a naive extractor");

    let s = Scratch::new();
    let r = SwappingReader {
        data: &tar,
        pos: 0,
        at: 512,
        layer: s.layer(),
        swapped: false,
    };
    let e = kontti_extract(r, &s.layer()).unwrap_err();
    assert!(matches!(e, UnpackError::Unsafe { .. }), "{e}");
    assert!(!pwned(&s));
    assert_eq!(s.outside_entries(), vec!["secret"]);
}

#[test]
fn absolute_symlinks_resolve_inside_the_root() {
    // /var/run -> /run style links are legitimate; following one while
    // unpacking stays inside the layer, as the container will see it.
    let s = Scratch::new();
    let outside = s.outside();
    let tar = Tar::new()
        .dir("run/", 0o755)
        .symlink("varrun", "/run")
        .file("varrun/x", b"inside", 0o644)
        .symlink("abs", outside.to_str().unwrap())
        .file("abs/pwned", b"x", 0o644)
        .finish();
    kontti_extract(&tar[..], &s.layer()).unwrap();
    assert_eq!(
        fs::read_to_string(s.layer().join("run/x")).unwrap(),
        "inside"
    );
    assert!(!pwned(&s));
    let rerooted = s
        .layer()
        .join(outside.strip_prefix("/").unwrap())
        .join("pwned");
    assert!(
        rerooted.exists(),
        "absolute symlink target re-rooted at the layer"
    );
}

#[test]
fn diff_id_is_verified_and_reported() {
    let tar = Tar::new().file("a", b"hello", 0o644).finish();
    let s = Scratch::new();
    let stats = apply_layer(
        &gzip(&tar)[..],
        &s.layer(),
        WhiteoutMode::Remove,
        Some(&sha256(&tar)),
    )
    .unwrap();
    assert_eq!(stats.diff_id, sha256(&tar));
    assert_eq!(stats.size, tar.len() as u64);
    assert_eq!(fs::read(s.layer().join("a")).unwrap(), b"hello");

    let s = Scratch::new();
    let wrong = sha256(b"other");
    let e = apply_layer(&tar[..], &s.layer(), WhiteoutMode::Remove, Some(&wrong)).unwrap_err();
    assert!(matches!(e, UnpackError::DiffIdMismatch { .. }), "{e}");
    assert!(e.to_string().contains(&wrong.to_string()));
}

#[test]
fn truncated_and_garbage_layers_are_errors() {
    let tar = Tar::new().file("a", &[7u8; 4000], 0o644).finish();
    let s = Scratch::new();
    let e = apply_layer(&tar[..1500], &s.layer(), WhiteoutMode::Remove, None).unwrap_err();
    assert!(
        matches!(e, UnpackError::Malformed(_) | UnpackError::Io { .. }),
        "{e}"
    );
    let gz = gzip(&tar);
    let e = apply_layer(&gz[..gz.len() / 2], &s.layer(), WhiteoutMode::Remove, None).unwrap_err();
    assert!(
        e.to_string().contains("malformed") || e.to_string().contains("unpacking"),
        "{e}"
    );
    let s = Scratch::new();
    let e = apply_layer(&[1u8; 1024][..], &s.layer(), WhiteoutMode::Remove, None).unwrap_err();
    assert!(matches!(e, UnpackError::Malformed(_)), "{e}");
}

#[test]
fn zstd_layers_are_detected_by_magic() {
    // A zstd frame holding a raw (uncompressed) block, built by hand: the
    // decoder is all kontti needs, so no encoder is linked into the tests.
    let tar = Tar::new().file("z", b"zstd content", 0o644).finish();
    let mut frame = vec![0x28, 0xb5, 0x2f, 0xfd];
    // Frame header: single segment, 4-byte content size.
    frame.push(0b1010_0000);
    frame.extend_from_slice(&(tar.len() as u32).to_le_bytes());
    // One last raw block.
    let header = ((tar.len() as u32) << 3) | 1;
    frame.extend_from_slice(&header.to_le_bytes()[..3]);
    frame.extend_from_slice(&tar);
    let s = Scratch::new();
    let stats = apply_layer(
        &frame[..],
        &s.layer(),
        WhiteoutMode::Remove,
        Some(&sha256(&tar)),
    )
    .unwrap();
    assert_eq!(stats.entries, 1);
    assert_eq!(fs::read(s.layer().join("z")).unwrap(), b"zstd content");
}
