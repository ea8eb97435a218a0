//! `COPY --chmod` / `ADD --chmod` modes: octal, or symbolic clauses as
//! chmod(1) takes them, applied to each source's own mode.

/// `--chmod`: an octal mode, or symbolic clauses (`u+x,go-w,a=rX`)
/// applied to each source's mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Chmod {
    Octal(u32),
    Symbolic(String),
}

impl Chmod {
    pub(crate) fn parse(text: &str) -> Option<Chmod> {
        if let Ok(n) = u32::from_str_radix(text, 8) {
            return (n <= 0o7777).then_some(Chmod::Octal(n));
        }
        let probe = Chmod::Symbolic(text.to_string());
        probe.symbolic(0, false).map(|_| probe)
    }

    /// The mode for an entry whose mode is `mode`.
    pub(crate) fn apply(spec: Option<&Chmod>, mode: u32, is_dir: bool) -> u32 {
        match spec {
            None => mode,
            Some(Chmod::Octal(n)) => *n,
            Some(c) => c.symbolic(mode, is_dir).unwrap_or(mode),
        }
    }

    fn symbolic(&self, mut mode: u32, is_dir: bool) -> Option<u32> {
        let Chmod::Symbolic(text) = self else {
            return None;
        };
        for clause in text.split(',') {
            let op_at = clause.find(['+', '-', '='])?;
            let (who, rest) = clause.split_at(op_at);
            let mut mask = 0;
            for c in who.chars() {
                mask |= match c {
                    'u' => 0o4700,
                    'g' => 0o2070,
                    'o' => 0o1007,
                    'a' => 0o7777,
                    _ => return None,
                };
            }
            if mask == 0 {
                mask = 0o7777;
            }
            let op = rest.chars().next()?;
            let mut bits = 0;
            for c in rest[1..].chars() {
                bits |= match c {
                    'r' => 0o444,
                    'w' => 0o222,
                    'x' => 0o111,
                    'X' if is_dir || mode & 0o111 != 0 => 0o111,
                    'X' => 0,
                    's' => 0o6000,
                    't' => 0o1000,
                    _ => return None,
                };
            }
            let bits = bits & mask;
            mode = match op {
                '+' => mode | bits,
                '-' => mode & !bits,
                _ => (mode & !(mask & 0o7777)) | bits,
            };
        }
        Some(mode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chmod_modes() {
        let c = |t: &str, mode: u32, dir: bool| Chmod::apply(Chmod::parse(t).as_ref(), mode, dir);
        assert_eq!(c("600", 0o755, false), 0o600);
        assert_eq!(c("u+x", 0o644, false), 0o744);
        assert_eq!(c("go-r", 0o644, false), 0o600);
        assert_eq!(c("a=rX", 0o700, true), 0o555);
        assert_eq!(c("a=rX", 0o600, false), 0o444);
        assert_eq!(c("u=rw,g=r,o=", 0o777, false), 0o640);
        assert_eq!(Chmod::parse("q+z"), None);
        assert_eq!(Chmod::parse("99999"), None);
    }
}
