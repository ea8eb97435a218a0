//! Progress of pulls and pushes: a bar per layer on a terminal, quiet
//! line-based output otherwise (one line per layer state change, as docker
//! prints when its output is not a terminal).

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use kontti_core::Digest;

/// Receives per-blob progress.
pub trait Progress: Send + Sync {
    /// A blob transfer starts (or resumes at `offset`).
    fn start(&self, digest: &Digest, size: u64, offset: u64);
    /// `n` more bytes moved.
    fn advance(&self, digest: &Digest, n: u64);
    /// The blob is complete and verified.
    fn done(&self, digest: &Digest);
    /// The blob was there already (pull: in the store; push: in the registry).
    fn exists(&self, digest: &Digest);
    /// A push mounted the blob from another repository.
    fn mounted(&self, digest: &Digest, from: &str) {
        let _ = from;
        self.exists(digest);
    }
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: &Digest, _: u64, _: u64) {}
    fn advance(&self, _: &Digest, _: u64) {}
    fn done(&self, _: &Digest) {}
    fn exists(&self, _: &Digest) {}
}

/// What the output says of a finished blob.
#[derive(Debug, Clone, Copy)]
pub enum Verb {
    /// "Pull complete" / "Already exists".
    Pull,
    /// "Pushed" / "Layer already exists".
    Push,
}

impl Verb {
    fn done(self) -> &'static str {
        match self {
            Verb::Pull => "Pull complete",
            Verb::Push => "Pushed",
        }
    }
    fn exists(self) -> &'static str {
        match self {
            Verb::Pull => "Already exists",
            Verb::Push => "Layer already exists",
        }
    }
    fn working(self) -> &'static str {
        match self {
            Verb::Pull => "Downloading",
            Verb::Push => "Pushing",
        }
    }
}

/// One line per state change, on stderr.
pub struct LineProgress {
    verb: Verb,
}

impl LineProgress {
    /// Line output for pulls or pushes.
    pub fn new(verb: Verb) -> LineProgress {
        LineProgress { verb }
    }

    fn line(&self, d: &Digest, what: &str) {
        let _ = writeln!(std::io::stderr(), "{}: {what}", d.short());
    }
}

impl Progress for LineProgress {
    fn start(&self, d: &Digest, _size: u64, offset: u64) {
        if offset > 0 {
            self.line(d, &format!("Resuming at {offset} bytes"));
        } else {
            self.line(d, self.verb.working());
        }
    }
    fn advance(&self, _: &Digest, _: u64) {}
    fn done(&self, d: &Digest) {
        self.line(d, self.verb.done());
    }
    fn exists(&self, d: &Digest) {
        self.line(d, self.verb.exists());
    }
    fn mounted(&self, d: &Digest, from: &str) {
        self.line(d, &format!("Mounted from {from}"));
    }
}

/// A progress bar per blob (terminal output).
pub struct BarProgress {
    verb: Verb,
    multi: MultiProgress,
    bars: Mutex<HashMap<Digest, ProgressBar>>,
}

impl BarProgress {
    /// Bars on stderr.
    pub fn new(verb: Verb) -> BarProgress {
        BarProgress {
            verb,
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: Mutex::new(HashMap::new()),
        }
    }

    fn finish(&self, d: &Digest, msg: &str) {
        let bar = self.bars.lock().ok().and_then(|mut b| b.remove(d));
        match bar {
            Some(b) => b.finish_with_message(msg.to_owned()),
            None => {
                let b = self.multi.add(ProgressBar::new(0));
                b.set_style(
                    ProgressStyle::with_template("{prefix}: {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                b.set_prefix(d.short().to_owned());
                b.finish_with_message(msg.to_owned());
            }
        }
    }
}

impl Progress for BarProgress {
    fn start(&self, d: &Digest, size: u64, offset: u64) {
        let b = self.multi.add(ProgressBar::new(size));
        let style =
            ProgressStyle::with_template("{prefix}: {msg} [{bar:30}] {bytes}/{total_bytes}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
        b.set_style(style);
        b.set_prefix(d.short().to_owned());
        b.set_message(self.verb.working());
        b.set_position(offset);
        if let Ok(mut bars) = self.bars.lock() {
            bars.insert(d.clone(), b);
        }
    }
    fn advance(&self, d: &Digest, n: u64) {
        if let Some(b) = self.bars.lock().ok().and_then(|b| b.get(d).cloned()) {
            b.inc(n);
        }
    }
    fn done(&self, d: &Digest) {
        self.finish(d, self.verb.done());
    }
    fn exists(&self, d: &Digest) {
        self.finish(d, self.verb.exists());
    }
    fn mounted(&self, d: &Digest, from: &str) {
        self.finish(d, &format!("Mounted from {from}"));
    }
}

/// Bars when stderr is a terminal, lines otherwise.
pub fn for_stderr(verb: Verb) -> std::sync::Arc<dyn Progress> {
    use std::io::IsTerminal;
    if std::io::stderr().is_terminal() {
        std::sync::Arc::new(BarProgress::new(verb))
    } else {
        std::sync::Arc::new(LineProgress::new(verb))
    }
}
