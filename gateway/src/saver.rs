//! The server's file writer: saves the tables that must survive a restart
//! (tokens admin sessions created, the symbol table) on a thread of its own,
//! so that no file is opened, written or renamed on the delivery path.
//!
//! Shape: the gateway thread records what changed in a small pending state
//! (a flag for the token table, the newest symbol table) and signals; the
//! writer thread takes the whole pending state at once, releases the lock,
//! and writes. Requests coalesce: whatever piled up while a write ran is
//! written once, newest state only.
//!
//! Invariants: the gateway thread never waits for I/O (it holds the lock
//! only to store a flag or swap a table, and the writer holds it only to take
//! them); a failed save is logged and retried on the next change (never in
//! a loop); stopping writes whatever is still pending before it returns, so
//! a clean restart finds every change made before the stop.

use crate::session::Auth;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;

/// What waits to be written.
#[derive(Debug, Default)]
struct Pending {
    tokens: bool,
    symbols: Option<BTreeMap<String, u32>>,
    stop: bool,
}

impl Pending {
    fn any(&self) -> bool {
        self.tokens || self.symbols.is_some()
    }
}

type Signal = Arc<(Mutex<Pending>, Condvar)>;

/// Writes the token and symbol tables off the gateway thread.
#[derive(Debug)]
pub(crate) struct Saver {
    signal: Signal,
    thread: Option<JoinHandle<()>>,
}

/// What the writer thread writes with.
struct Target {
    data_dir: PathBuf,
    auth: Arc<Auth>,
    /// Not saved with the others (it has its own file).
    operator_token: String,
}

impl Saver {
    /// Starts the writer thread.
    pub(crate) fn start(
        data_dir: PathBuf,
        auth: Arc<Auth>,
        operator_token: String,
    ) -> std::io::Result<Saver> {
        let signal: Signal = Arc::default();
        let s = signal.clone();
        let target = Target {
            data_dir,
            auth,
            operator_token,
        };
        let thread = std::thread::Builder::new()
            .name("gateway-saver".into())
            .spawn(move || run(&s, &target))?;
        Ok(Saver {
            signal,
            thread: Some(thread),
        })
    }

    fn update(&self, f: impl FnOnce(&mut Pending)) {
        let (lock, cv) = &*self.signal;
        f(&mut lock.lock().unwrap_or_else(PoisonError::into_inner));
        cv.notify_one();
    }

    /// The token table changed: save it (as it is when written).
    pub(crate) fn save_tokens(&self) {
        self.update(|p| p.tokens = true);
    }

    /// The symbol table is now `table`.
    pub(crate) fn save_symbols(&self, table: BTreeMap<String, u32>) {
        self.update(|p| p.symbols = Some(table));
    }

    /// Writes what is pending, then stops the thread.
    pub(crate) fn stop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.update(|p| p.stop = true);
            if t.join().is_err() {
                tracing::error!("the gateway's file writer panicked");
            }
        }
    }
}

impl Drop for Saver {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(signal: &Signal, target: &Target) {
    let (lock, cv) = &**signal;
    loop {
        let (work, stop) = {
            let mut p = lock.lock().unwrap_or_else(PoisonError::into_inner);
            while !p.any() && !p.stop {
                p = cv.wait(p).unwrap_or_else(PoisonError::into_inner);
            }
            let stop = p.stop;
            (std::mem::take(&mut *p), stop)
        };
        write(target, work);
        if stop {
            return;
        }
    }
}

/// One round of writes; failures are logged (the next change retries).
fn write(target: &Target, work: Pending) {
    if work.tokens {
        if let Err(e) =
            crate::identity::save_tokens(&target.data_dir, &target.auth, &target.operator_token)
        {
            tracing::error!(error = %e, "could not save the token table");
        }
    }
    if let Some(table) = work.symbols {
        if let Err(e) = crate::demo::write_symbols(&target.data_dir, &table) {
            tracing::warn!(error = %e, "could not write the symbol table");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_newest_tables_and_everything_pending_at_stop() {
        let dir = tempfile::tempdir().unwrap();
        let auth = Arc::new(Auth::new());
        let mut s = Saver::start(dir.path().into(), auth.clone(), "op".into()).unwrap();
        for (i, sym) in ["AAA", "BBB", "CCC"].iter().enumerate() {
            let mut t = BTreeMap::new();
            for x in &["AAA", "BBB", "CCC"][..=i] {
                t.insert(x.to_string(), 1);
            }
            s.save_symbols(t);
            auth.add_token(&format!("tok-{sym}"), Vec::new(), Default::default());
            s.save_tokens();
        }
        s.stop();
        let symbols = crate::demo::read_symbols(dir.path());
        assert_eq!(symbols.keys().collect::<Vec<_>>(), ["AAA", "BBB", "CCC"]);
        let back = Auth::new();
        assert_eq!(crate::identity::load_tokens(dir.path(), &back).unwrap(), 3);
    }
}
