//! `--user` and the image's USER: names looked up in the container's own
//! `/etc/passwd` and `/etc/group`, read confined to its root filesystem (a
//! symlink in the image cannot make the engine read a host file).

use std::io::Read;
use std::path::Path;

use rustix::fs::{Mode, OFlags, ResolveFlags};

use crate::error::{EngineError, Result};

/// A user specification resolved against a root filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups (those of `/etc/group` that list the user).
    pub additional_gids: Vec<u32>,
    /// The home directory from `/etc/passwd`.
    pub home: Option<String>,
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// Reads `etc/<file>` of `rootfs` without following a symlink out of it;
/// `None` if it does not exist.
fn read_etc(rootfs: &Path, file: &str) -> Option<String> {
    let root = kontti_image::fsroot::Root::open(rootfs).ok()?;
    let etc = root.dir(Path::new("etc"), false).ok()?;
    let fd = rustix::fs::openat2(
        &etc,
        file,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )
    .ok()?;
    let mut s = String::new();
    std::fs::File::from(fd)
        .take(4 << 20)
        .read_to_string(&mut s)
        .ok()?;
    Some(s)
}

fn passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 7 {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_owned(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f[5].to_owned(),
            })
        })
        .collect()
}

fn groups(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            Some(GroupEntry {
                name: f[0].to_owned(),
                gid: f[2].parse().ok()?,
                members: f[3]
                    .split(',')
                    .filter(|m| !m.is_empty())
                    .map(str::to_owned)
                    .collect(),
            })
        })
        .collect()
}

/// Resolves `spec` (`user`, `uid`, `user:group`, `uid:gid`; empty is root)
/// against the files of `rootfs`.
pub fn resolve(rootfs: &Path, spec: &str) -> Result<ResolvedUser> {
    let passwd_text = read_etc(rootfs, "passwd").unwrap_or_default();
    let group_text = read_etc(rootfs, "group").unwrap_or_default();
    resolve_in(spec, &passwd_text, &group_text)
}

fn resolve_in(spec: &str, passwd_text: &str, group_text: &str) -> Result<ResolvedUser> {
    let users = passwd(passwd_text);
    let groups = groups(group_text);
    let unknown = |reason: &str| EngineError::UnknownUser {
        user: spec.to_owned(),
        reason: reason.to_owned(),
    };
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let entry = match user_part.parse::<u32>() {
        Ok(uid) => users.iter().find(|u| u.uid == uid),
        Err(_) => Some(
            users
                .iter()
                .find(|u| u.name == user_part)
                .ok_or_else(|| unknown("no matching entries in the container's /etc/passwd"))?,
        ),
    };
    let uid = match entry {
        Some(e) => e.uid,
        None => user_part.parse::<u32>().map_err(|_| unknown("bad uid"))?,
    };
    let gid = match group_part {
        Some(g) if !g.is_empty() => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => groups
                .iter()
                .find(|e| e.name == g)
                .map(|e| e.gid)
                .ok_or_else(|| unknown("no matching group in the container's /etc/group"))?,
        },
        _ => entry.map_or(0, |e| e.gid),
    };
    let mut additional_gids = Vec::new();
    if let (None, Some(e)) = (group_part, entry) {
        for g in &groups {
            if g.members.contains(&e.name) && g.gid != gid {
                additional_gids.push(g.gid);
            }
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
        home: entry.map(|e| e.home.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str =
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nuser:x:1000:\nextra:x:2000:user\n";

    #[test]
    fn names_and_numbers() {
        let u = resolve_in("user", PASSWD, GROUP).unwrap();
        assert_eq!(
            (u.uid, u.gid, u.additional_gids.clone()),
            (1000, 1000, vec![2000])
        );
        assert_eq!(u.home.as_deref(), Some("/home/user"));
        let u = resolve_in("user:extra", PASSWD, GROUP).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 2000));
        let u = resolve_in("4242:77", PASSWD, GROUP).unwrap();
        assert_eq!((u.uid, u.gid, u.home), (4242, 77, None));
        assert_eq!(resolve_in("", PASSWD, GROUP).unwrap().uid, 0);
        let e = resolve_in("nobody", PASSWD, GROUP).unwrap_err().to_string();
        assert!(e.contains("unable to find user nobody"), "{e}");
        assert!(resolve_in("user:nogroup", PASSWD, GROUP).is_err());
    }

    #[test]
    fn reads_the_rootfs_without_leaving_it() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("etc")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", tmp.path().join("etc/passwd")).unwrap();
        // the host's passwd is not read through the symlink: "root" is unknown
        assert!(resolve(tmp.path(), "root").is_err());
        std::fs::remove_file(tmp.path().join("etc/passwd")).unwrap();
        std::fs::write(tmp.path().join("etc/passwd"), PASSWD).unwrap();
        assert_eq!(resolve(tmp.path(), "user").unwrap().uid, 1000);
    }
}
