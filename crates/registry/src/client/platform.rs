//! Platforms (`os/arch[/variant]`) and their selection from an index.

use std::fmt;
use std::str::FromStr;

/// A platform an image is built for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// Operating system (`linux`).
    pub os: String,
    /// Architecture in Go's names (`amd64`, `arm64`).
    pub architecture: String,
    /// Variant (`v7`, `v8`), if any.
    pub variant: Option<String>,
}

/// Why a string is not a platform.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid platform {0:?}: expected OS/ARCH[/VARIANT], e.g. linux/amd64")]
pub struct PlatformError(pub String);

impl Platform {
    /// The platform of this machine.
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "arm" => "arm",
            other => other,
        };
        Platform {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: None,
        }
    }

    /// Whether an index entry's `platform` object matches.
    pub fn matches(&self, p: &serde_json::Value) -> bool {
        let os = p["os"].as_str().unwrap_or("");
        let arch = p["architecture"].as_str().unwrap_or("");
        if os != self.os || arch != self.architecture {
            return false;
        }
        match (&self.variant, p["variant"].as_str()) {
            (Some(v), Some(pv)) => v == pv,
            (Some(v), None) => self.architecture == "arm64" && v == "v8",
            (None, _) => true,
        }
    }

    /// Describes an index entry's platform for messages.
    pub fn describe(p: &serde_json::Value) -> String {
        let mut s = format!(
            "{}/{}",
            p["os"].as_str().unwrap_or("?"),
            p["architecture"].as_str().unwrap_or("?")
        );
        if let Some(v) = p["variant"].as_str() {
            s.push('/');
            s.push_str(v);
        }
        s
    }
}

impl FromStr for Platform {
    type Err = PlatformError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok =
            |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: None,
            }),
            [os, arch, v] if ok(os) && ok(arch) && ok(v) => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: Some(v.to_string()),
            }),
            _ => Err(PlatformError(s.to_owned())),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_and_matches() {
        let p: Platform = "linux/arm64/v8".parse().unwrap();
        assert!(p.matches(&json!({"os": "linux", "architecture": "arm64", "variant": "v8"})));
        assert!(p.matches(&json!({"os": "linux", "architecture": "arm64"})));
        let p: Platform = "linux/amd64".parse().unwrap();
        assert!(!p.matches(&json!({"os": "linux", "architecture": "arm64"})));
        assert!("linux".parse::<Platform>().is_err());
        assert!("linux/amd64/v1/x".parse::<Platform>().is_err());
        assert_eq!(p.to_string(), "linux/amd64");
    }
}
