//! The supervisor's command line, parsed by hand (no argument-parsing
//! dependency: the binary stays small).

use std::ffi::OsString;
use std::path::PathBuf;

/// `kontti-supervisor run ...`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunArgs {
    /// Container id.
    pub id: String,
    /// OCI bundle.
    pub bundle: PathBuf,
    /// The runtime's state root.
    pub runtime_root: PathBuf,
    /// The supervisor's state directory.
    pub state_dir: PathBuf,
    /// The CRI log file.
    pub log_path: PathBuf,
    /// Rotate the log past this many bytes.
    pub log_max_size: Option<u64>,
    /// Files to keep in all when rotating (default 1 when a size is set).
    pub log_max_files: Option<u32>,
    /// Give the container a terminal.
    pub tty: bool,
    /// Keep stdin open for attach clients.
    pub stdin: bool,
    /// Start only when the first attach client connects.
    pub wait_attach: bool,
    /// The fd to write the readiness line to (stdout when unset).
    pub ready_fd: Option<i32>,
    /// Run after the container is gone.
    pub exit_command: Option<PathBuf>,
    /// Its arguments.
    pub exit_command_args: Vec<String>,
    /// Run every `health_interval_ms` while the container runs (one at a
    /// time): the engine's one-shot health check.
    pub health_command: Option<PathBuf>,
    /// Its arguments.
    pub health_command_args: Vec<String>,
    /// Between the end of a check and the start of the next.
    pub health_interval_ms: Option<u64>,
}

/// `kontti-supervisor exec ...`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecArgs {
    /// Container id.
    pub id: String,
    /// The runtime's state root.
    pub runtime_root: PathBuf,
    /// The OCI process JSON.
    pub process: PathBuf,
    /// The socket to serve on.
    pub socket: PathBuf,
    /// Where to write the exit record.
    pub exit_file: PathBuf,
    /// The process has a terminal.
    pub tty: bool,
    /// Pass clients' stdin.
    pub stdin: bool,
    /// The readiness fd.
    pub ready_fd: Option<i32>,
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Args {
    /// Supervise a container.
    Run(RunArgs),
    /// Supervise one extra process.
    Exec(ExecArgs),
    /// Pin a new network namespace on a path.
    PinNetns(PathBuf),
    /// `--help`.
    Help,
}

/// The usage text.
pub const USAGE: &str = "usage:
  kontti-supervisor run --id ID --bundle DIR --runtime-root DIR --state-dir DIR --log-path FILE
      [--log-max-size BYTES] [--log-max-files N] [--tty] [--stdin] [--wait-attach]
      [--ready-fd N] [--exit-command PATH [--exit-command-arg ARG]...]
      [--health-command PATH [--health-command-arg ARG]... --health-interval-ms MS]
  kontti-supervisor exec --id ID --runtime-root DIR --process FILE --socket PATH --exit-file FILE
      [--tty] [--stdin] [--ready-fd N]
  kontti-supervisor pin-netns PATH";

/// A command-line error: one line naming the flag at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ArgsError(pub String);

struct Cursor {
    rest: std::vec::IntoIter<OsString>,
}

impl Cursor {
    fn value(&mut self, flag: &str) -> Result<OsString, ArgsError> {
        self.rest
            .next()
            .ok_or_else(|| ArgsError(format!("{flag}: missing value")))
    }
    fn string(&mut self, flag: &str) -> Result<String, ArgsError> {
        self.value(flag)?
            .into_string()
            .map_err(|_| ArgsError(format!("{flag}: not valid UTF-8")))
    }
    fn number<T: std::str::FromStr>(&mut self, flag: &str) -> Result<T, ArgsError> {
        let s = self.string(flag)?;
        s.parse()
            .map_err(|_| ArgsError(format!("{flag}: {s:?} is not a valid number")))
    }
}

fn required<T: Default + PartialEq>(v: &T, flag: &str) -> Result<(), ArgsError> {
    if *v == T::default() {
        return Err(ArgsError(format!("{flag} is required")));
    }
    Ok(())
}

/// Parses the arguments after the program name.
pub fn parse(args: Vec<OsString>) -> Result<Args, ArgsError> {
    let mut c = Cursor {
        rest: args.into_iter(),
    };
    let Some(cmd) = c.rest.next() else {
        return Err(ArgsError(
            "missing subcommand (run, exec or pin-netns)".into(),
        ));
    };
    match cmd.to_str() {
        Some("run") => parse_run(&mut c).map(Args::Run),
        Some("exec") => parse_exec(&mut c).map(Args::Exec),
        Some("pin-netns") => {
            let path = c
                .rest
                .next()
                .ok_or_else(|| ArgsError("pin-netns: missing PATH".into()))?;
            if let Some(extra) = c.rest.next() {
                return Err(ArgsError(format!(
                    "pin-netns: unexpected argument {}",
                    extra.to_string_lossy()
                )));
            }
            Ok(Args::PinNetns(PathBuf::from(path)))
        }
        Some("-h" | "--help" | "help") => Ok(Args::Help),
        _ => Err(ArgsError(format!(
            "unknown subcommand {:?} (run, exec or pin-netns)",
            cmd.to_string_lossy()
        ))),
    }
}

fn unknown(flag: &OsString) -> ArgsError {
    ArgsError(format!("unknown flag {}", flag.to_string_lossy()))
}

fn parse_run(c: &mut Cursor) -> Result<RunArgs, ArgsError> {
    let mut a = RunArgs::default();
    while let Some(flag) = c.rest.next() {
        match flag.to_str().unwrap_or("") {
            "--id" => a.id = c.string("--id")?,
            "--bundle" => a.bundle = c.value("--bundle")?.into(),
            "--runtime-root" => a.runtime_root = c.value("--runtime-root")?.into(),
            "--state-dir" => a.state_dir = c.value("--state-dir")?.into(),
            "--log-path" => a.log_path = c.value("--log-path")?.into(),
            "--log-max-size" => a.log_max_size = Some(c.number("--log-max-size")?),
            "--log-max-files" => {
                let n: u32 = c.number("--log-max-files")?;
                if n == 0 {
                    return Err(ArgsError("--log-max-files: must be at least 1".into()));
                }
                a.log_max_files = Some(n);
            }
            "--tty" => a.tty = true,
            "--stdin" => a.stdin = true,
            "--wait-attach" => a.wait_attach = true,
            "--ready-fd" => a.ready_fd = Some(c.number("--ready-fd")?),
            "--exit-command" => a.exit_command = Some(c.value("--exit-command")?.into()),
            "--exit-command-arg" => a.exit_command_args.push(c.string("--exit-command-arg")?),
            "--health-command" => a.health_command = Some(c.value("--health-command")?.into()),
            "--health-command-arg" => {
                a.health_command_args
                    .push(c.string("--health-command-arg")?);
            }
            "--health-interval-ms" => {
                let n: u64 = c.number("--health-interval-ms")?;
                if n == 0 {
                    return Err(ArgsError("--health-interval-ms: must be above 0".into()));
                }
                a.health_interval_ms = Some(n);
            }
            _ => return Err(unknown(&flag)),
        }
    }
    required(&a.id, "--id")?;
    required(&a.bundle, "--bundle")?;
    required(&a.runtime_root, "--runtime-root")?;
    required(&a.state_dir, "--state-dir")?;
    required(&a.log_path, "--log-path")?;
    if a.log_max_size == Some(0) {
        return Err(ArgsError("--log-max-size: must be above 0".into()));
    }
    if !a.exit_command_args.is_empty() && a.exit_command.is_none() {
        return Err(ArgsError("--exit-command-arg needs --exit-command".into()));
    }
    if a.health_command.is_some() != a.health_interval_ms.is_some() {
        return Err(ArgsError(
            "--health-command and --health-interval-ms go together".into(),
        ));
    }
    if !a.health_command_args.is_empty() && a.health_command.is_none() {
        return Err(ArgsError(
            "--health-command-arg needs --health-command".into(),
        ));
    }
    Ok(a)
}

fn parse_exec(c: &mut Cursor) -> Result<ExecArgs, ArgsError> {
    let mut a = ExecArgs::default();
    while let Some(flag) = c.rest.next() {
        match flag.to_str().unwrap_or("") {
            "--id" => a.id = c.string("--id")?,
            "--runtime-root" => a.runtime_root = c.value("--runtime-root")?.into(),
            "--process" => a.process = c.value("--process")?.into(),
            "--socket" => a.socket = c.value("--socket")?.into(),
            "--exit-file" => a.exit_file = c.value("--exit-file")?.into(),
            "--tty" => a.tty = true,
            "--stdin" => a.stdin = true,
            "--ready-fd" => a.ready_fd = Some(c.number("--ready-fd")?),
            _ => return Err(unknown(&flag)),
        }
    }
    required(&a.id, "--id")?;
    required(&a.runtime_root, "--runtime-root")?;
    required(&a.process, "--process")?;
    required(&a.socket, "--socket")?;
    required(&a.exit_file, "--exit-file")?;
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Args, ArgsError> {
        parse(s.split_whitespace().map(OsString::from).collect())
    }

    #[test]
    fn parses_run_exec_and_pin() {
        let Args::Run(r) = p(
            "run --id a --bundle /b --runtime-root /r --state-dir /s --log-path /l \
             --log-max-size 10 --log-max-files 2 --tty --stdin --wait-attach --ready-fd 5 \
             --exit-command /x --exit-command-arg y --health-command /h \
             --health-command-arg check --health-interval-ms 250",
        )
        .unwrap() else {
            panic!("not run")
        };
        assert_eq!(r.id, "a");
        assert_eq!(r.log_max_size, Some(10));
        assert_eq!(r.log_max_files, Some(2));
        assert!(r.tty && r.stdin && r.wait_attach);
        assert_eq!(r.ready_fd, Some(5));
        assert_eq!(r.exit_command_args, ["y"]);
        assert_eq!(
            r.health_command.as_deref(),
            Some(std::path::Path::new("/h"))
        );
        assert_eq!(
            (r.health_command_args.as_slice(), r.health_interval_ms),
            (["check".to_owned()].as_slice(), Some(250))
        );
        let Args::Exec(e) =
            p("exec --id a --runtime-root /r --process /p --socket /s --exit-file /e --tty")
                .unwrap()
        else {
            panic!("not exec")
        };
        assert!(e.tty && !e.stdin);
        assert_eq!(p("pin-netns /x").unwrap(), Args::PinNetns("/x".into()));
    }

    #[test]
    fn bad_command_lines_name_the_flag() {
        let base = "run --id a --bundle /b --runtime-root /r --state-dir /s --log-path /l";
        for (line, want) in [
            ("", "missing subcommand"),
            ("start", "unknown subcommand"),
            ("run --id a", "--bundle is required"),
            (
                &format!("{base} --log-max-size 12q"),
                "--log-max-size: \"12q\" is not a valid number",
            ),
            (
                &format!("{base} --log-max-size 0"),
                "--log-max-size: must be above 0",
            ),
            (
                &format!("{base} --log-max-files 0"),
                "--log-max-files: must be at least 1",
            ),
            (&format!("{base} --ready-fd"), "--ready-fd: missing value"),
            (&format!("{base} --bogus"), "unknown flag --bogus"),
            (
                &format!("{base} --exit-command-arg x"),
                "--exit-command-arg needs --exit-command",
            ),
            (
                &format!("{base} --health-command /h"),
                "--health-command and --health-interval-ms go together",
            ),
            (
                &format!("{base} --health-command /h --health-interval-ms 0"),
                "--health-interval-ms: must be above 0",
            ),
            (
                &format!("{base} --health-command-arg x --health-interval-ms 5"),
                "go together",
            ),
            ("exec --id a", "--runtime-root is required"),
            ("pin-netns", "pin-netns: missing PATH"),
            ("pin-netns /a /b", "unexpected argument /b"),
        ] {
            let e = p(line).unwrap_err().to_string();
            assert!(e.contains(want), "{line:?}: {e}");
        }
    }
}
