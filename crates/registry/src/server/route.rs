//! Parsing request paths of the distribution API into routes.
//!
//! Repository names may contain slashes, so a path is read from its end: the
//! last segments name the endpoint and everything before them is the name.

/// An endpoint of the distribution API, with its path parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/v2/`: the version check.
    Base,
    /// `/v2/_catalog`.
    Catalog,
    /// `/v2/<name>/tags/list`.
    Tags { name: String },
    /// `/v2/<name>/manifests/<reference>`.
    Manifest { name: String, reference: String },
    /// `/v2/<name>/blobs/<digest>`.
    Blob { name: String, digest: String },
    /// `/v2/<name>/blobs/uploads/`: starts an upload.
    StartUpload { name: String },
    /// `/v2/<name>/blobs/uploads/<id>`.
    Upload { name: String, id: String },
    /// `/v2/<name>/referrers/<digest>`.
    Referrers { name: String, digest: String },
}

/// Why a path is not an API route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// Not under `/v2/` or no known endpoint.
    NotFound,
    /// A known endpoint with an invalid repository name.
    BadName(String),
}

/// Whether `name` is a valid repository name (the distribution spec's
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`).
pub fn valid_name(name: &str) -> bool {
    if name.is_empty() || name.len() > 255 {
        return false;
    }
    name.split('/').all(valid_component)
}

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or "-+", followed by an alnum.
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || i >= b.len() || !alnum(b[i]) {
            return false;
        }
    }
    true
}

/// Whether `tag` is a valid tag (`[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`).
pub fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// Parses a request path (without query string).
pub fn parse(path: &str) -> Result<Route, RouteError> {
    let rest = match path {
        "/v2" | "/v2/" => return Ok(Route::Base),
        _ => path.strip_prefix("/v2/").ok_or(RouteError::NotFound)?,
    };
    if rest == "_catalog" {
        return Ok(Route::Catalog);
    }
    let segs: Vec<&str> = rest.split('/').collect();
    let n = segs.len();
    if n < 3 {
        return Err(RouteError::NotFound);
    }
    let (last, kind) = (segs[n - 1], segs[n - 2]);
    let name_of = |upto: usize| -> Result<String, RouteError> {
        let name = segs[..upto].join("/");
        if valid_name(&name) {
            Ok(name)
        } else {
            Err(RouteError::BadName(name))
        }
    };
    if kind == "uploads" && n >= 4 && segs[n - 3] == "blobs" {
        let name = name_of(n - 3)?;
        return Ok(if last.is_empty() {
            Route::StartUpload { name }
        } else {
            Route::Upload {
                name,
                id: last.to_owned(),
            }
        });
    }
    if last.is_empty() {
        return Err(RouteError::NotFound);
    }
    match kind {
        "tags" if last == "list" => Ok(Route::Tags {
            name: name_of(n - 2)?,
        }),
        "manifests" => Ok(Route::Manifest {
            name: name_of(n - 2)?,
            reference: last.to_owned(),
        }),
        "blobs" => Ok(Route::Blob {
            name: name_of(n - 2)?,
            digest: last.to_owned(),
        }),
        "referrers" => Ok(Route::Referrers {
            name: name_of(n - 2)?,
            digest: last.to_owned(),
        }),
        _ => Err(RouteError::NotFound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_spec() {
        for ok in ["a", "library/busybox", "a.b/c_d/e__f", "x--y", "0/1/2"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "", "A", "a/", "/a", "a//b", "a..b", "a___b", "-a", "a-", "../x", "a b",
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn parses_every_endpoint() {
        assert_eq!(parse("/v2/"), Ok(Route::Base));
        assert_eq!(parse("/v2/_catalog"), Ok(Route::Catalog));
        assert_eq!(
            parse("/v2/a/b/tags/list"),
            Ok(Route::Tags { name: "a/b".into() })
        );
        assert_eq!(
            parse("/v2/blobs/manifests/manifests/latest"),
            Ok(Route::Manifest {
                name: "blobs/manifests".into(),
                reference: "latest".into()
            })
        );
        assert_eq!(
            parse("/v2/x/blobs/sha256:00"),
            Ok(Route::Blob {
                name: "x".into(),
                digest: "sha256:00".into()
            })
        );
        assert_eq!(
            parse("/v2/x/y/blobs/uploads/"),
            Ok(Route::StartUpload { name: "x/y".into() })
        );
        assert_eq!(
            parse("/v2/x/blobs/uploads/abc"),
            Ok(Route::Upload {
                name: "x".into(),
                id: "abc".into()
            })
        );
        assert_eq!(
            parse("/v2/x/referrers/sha256:00"),
            Ok(Route::Referrers {
                name: "x".into(),
                digest: "sha256:00".into()
            })
        );
    }

    #[test]
    fn refuses_unknown_paths_and_names() {
        assert_eq!(parse("/v1/"), Err(RouteError::NotFound));
        assert_eq!(parse("/v2/x/other/y"), Err(RouteError::NotFound));
        assert_eq!(parse("/v2/x/manifests/"), Err(RouteError::NotFound));
        assert_eq!(
            parse("/v2/../x/manifests/latest"),
            Err(RouteError::BadName("../x".into()))
        );
        assert_eq!(
            parse("/v2/UP/manifests/latest"),
            Err(RouteError::BadName("UP".into()))
        );
    }

    #[test]
    fn tags_follow_the_spec() {
        assert!(valid_tag("latest") && valid_tag("_x") && valid_tag("v1.2-rc_3"));
        assert!(
            !valid_tag("") && !valid_tag(".x") && !valid_tag("a/b") && !valid_tag(&"a".repeat(129))
        );
    }
}
