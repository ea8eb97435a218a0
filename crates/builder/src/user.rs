//! Users and groups of a stage's root filesystem (`USER`, `--chown`),
//! looked up in its `/etc/passwd` and `/etc/group`, read confined to the
//! root so that a symlink in an image cannot make the builder read a host
//! file.

use std::io::Read;
use std::path::Path;

use rustix::fs::{Mode, OFlags, ResolveFlags};

/// A resolved user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ids {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (the user's memberships in `/etc/group`).
    pub additional: Vec<u32>,
}

/// Reads `path` (absolute inside `root`) with symlinks resolved inside
/// `root`. `None` when it does not exist or cannot be read.
pub(crate) fn read_in_root(root: &Path, path: &str) -> Option<String> {
    let dir = rustix::fs::open(root, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).ok()?;
    let fd = rustix::fs::openat2(
        &dir,
        path.trim_start_matches('/'),
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
    .ok()?;
    let mut text = String::new();
    std::fs::File::from(fd)
        .take(4 << 20)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

fn fields(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(':').collect::<Vec<_>>())
}

/// Resolves `user[:group]` (names or numbers) in the rootfs at `root`.
/// A numeric user not in `/etc/passwd` gets group 0 (or the given group).
pub(crate) fn resolve(root: &Path, spec: &str) -> Result<Ids, String> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = read_in_root(root, "/etc/passwd").unwrap_or_default();
    let groups = read_in_root(root, "/etc/group").unwrap_or_default();
    let entry = fields(&passwd)
        .find(|f| f.len() >= 4 && (f[0] == user || (user.parse::<u32>().is_ok() && f[2] == user)));
    let (uid, name, primary) = match (&entry, user.parse::<u32>()) {
        (Some(f), _) => (
            f[2].parse::<u32>()
                .map_err(|_| format!("bad uid in /etc/passwd for {user}"))?,
            Some(f[0].to_string()),
            f[3].parse::<u32>().unwrap_or(0),
        ),
        (None, Ok(uid)) => (uid, None, 0),
        (None, Err(_)) => {
            return Err(format!(
                "unable to find user {user}: no matching entries in passwd file"
            ));
        }
    };
    let gid = match group {
        None => primary,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => fields(&groups)
                .find(|f| f.len() >= 3 && f[0] == g)
                .and_then(|f| f[2].parse::<u32>().ok())
                .ok_or_else(|| {
                    format!("unable to find group {g}: no matching entries in group file")
                })?,
        },
    };
    let mut additional = Vec::new();
    if group.is_none()
        && let Some(name) = name
    {
        for f in fields(&groups) {
            if f.len() >= 4
                && f[3].split(',').any(|m| m == name)
                && let Ok(g) = f[2].parse::<u32>()
                && g != gid
            {
                additional.push(g);
            }
        }
    }
    Ok(Ids {
        uid,
        gid,
        additional,
    })
}

/// Resolves `--chown=user[:group]`: a numeric user alone gets the same
/// number as group, a named user alone its primary group.
pub(crate) fn resolve_chown(root: &Path, spec: &str) -> Result<(u32, u32), String> {
    if !spec.contains(':')
        && let Ok(n) = spec.parse::<u32>()
    {
        return Ok((n, n));
    }
    let ids = resolve(root, spec)?;
    Ok((ids.uid, ids.gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_and_groups() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\nuser:x:1000:\nextra:x:2000:user\n",
        )
        .unwrap();
        let r = dir.path();
        assert_eq!(
            resolve(r, "user").unwrap(),
            Ids {
                uid: 1000,
                gid: 1000,
                additional: vec![2000]
            }
        );
        assert_eq!(resolve(r, "user:extra").unwrap().gid, 2000);
        assert_eq!(resolve(r, "1234").unwrap().uid, 1234);
        assert!(resolve(r, "nobody").unwrap_err().contains("nobody"));
        assert_eq!(resolve_chown(r, "55").unwrap(), (55, 55));
        assert_eq!(resolve_chown(r, "user").unwrap(), (1000, 1000));
    }

    #[test]
    fn reads_stay_in_the_root() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", dir.path().join("etc/passwd")).unwrap();
        assert_eq!(read_in_root(dir.path(), "/etc/passwd"), None);
    }
}
