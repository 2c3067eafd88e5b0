//! Differential suite: every transcript under `tests/transcripts/` is replayed against
//! upstream memcached and against rampart, both started with the transcript's `args`, and
//! every step must get the same reply bytes after the normalisations listed in
//! `rampart_tests::normalise::NORMALISATIONS` (version string, stat values, CAS uniques).
//!
//! A missing rampart binary fails every test here with a message saying how to build it.
//! `TRANSCRIPT_DUMP=1` prints memcached's replies step by step (for writing transcripts).

use std::path::PathBuf;
use std::thread;

use rampart_tests::replay::{self, StepOutcome};
use rampart_tests::report::{compare, describe, escape};
use rampart_tests::transcript::Transcript;
use rampart_tests::{Kind, Server, package_dir};

/// Defines one test per transcript and the list the completeness check uses.
macro_rules! transcripts {
    ($($name:ident),* $(,)?) => {
        const TRANSCRIPTS: &[&str] = &[$(stringify!($name)),*];
        $(
            #[test]
            fn $name() {
                differential(stringify!($name));
            }
        )*
    };
}

transcripts! {
    storage,
    retrieval,
    cas,
    cas_disabled,
    incr_decr,
    touch_gat,
    delete,
    flush_all,
    noreply,
    errors,
    item_size,
    pipelining,
    split_writes,
    large_values,
    connection,
    stats,
    shutdown_enabled,
    flush_disabled,
    idle_timeout,
    flags,
    meta,
    meta_flags,
    meta_errors,
    meta_stale,
    meta_threads,
    maintenance,
    crawler,
    dumps_disabled,
}

fn transcripts_dir() -> PathBuf {
    package_dir().join("transcripts")
}

/// Replays one transcript on both servers at once and fails with a report on any difference.
fn differential(name: &str) {
    let path = transcripts_dir().join(format!("{name}.txt"));
    let transcript = Transcript::load(&path).unwrap_or_else(|e| panic!("{e}"));
    // Fail up front, not half-way, when a binary is missing.
    Kind::Memcached.binary();
    Kind::Rampart.binary();
    let ((reference, _), (candidate, candidate_log)) = thread::scope(|scope| {
        let reference = scope.spawn(|| replay_on(Kind::Memcached, &transcript));
        let candidate = scope.spawn(|| replay_on(Kind::Rampart, &transcript));
        (join(reference), join(candidate))
    });
    if std::env::var_os("TRANSCRIPT_DUMP").is_some() {
        dump(&transcript, &reference);
    }
    if let Err(report) = compare(&transcript, "memcached", &reference, "rampart", &candidate) {
        panic!("{report}\n\n{candidate_log}");
    }
}

/// Runs the transcript on a fresh server of `kind`; also returns its diagnostics (command
/// line, output) for the failure report.
fn replay_on(kind: Kind, transcript: &Transcript) -> (Vec<StepOutcome>, String) {
    let args: Vec<&str> = transcript.args.iter().map(String::as_str).collect();
    let mut server = Server::start(kind, &args);
    let outcomes = replay::run(&server, transcript);
    // Stop it now so that its output is complete in the diagnostics.
    server.terminate();
    server.drain_output();
    (outcomes, server.diagnostics())
}

fn join<T>(handle: thread::ScopedJoinHandle<'_, T>) -> T {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

fn dump(transcript: &Transcript, outcomes: &[StepOutcome]) {
    println!("=== {}.txt args {:?}", transcript.name, transcript.args);
    for (step, outcome) in transcript.steps.iter().zip(outcomes) {
        println!("--- step (line {}) {}", step.line, step.title);
        println!("  > {}", escape(&step.request_template()));
        println!("  < {}", describe(outcome));
    }
}

/// A transcript file without a test (or a test without a file) is a mistake.
#[test]
fn every_transcript_file_has_a_test() {
    let mut files: Vec<String> = std::fs::read_dir(transcripts_dir())
        .unwrap_or_else(|e| panic!("reading {}: {e}", transcripts_dir().display()))
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "txt"))
        .filter_map(|path| path.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    files.sort();
    let mut listed: Vec<String> = TRANSCRIPTS.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(
        files, listed,
        "tests/transcripts/*.txt and transcripts! differ"
    );
}

/// Every transcript parses, so a typo fails fast even without any server.
#[test]
fn every_transcript_parses() {
    for name in TRANSCRIPTS {
        let path = transcripts_dir().join(format!("{name}.txt"));
        if let Err(e) = Transcript::load(&path) {
            panic!("{e}");
        }
    }
}

/// tests/README.md describes each normalisation by its name, so docs can cite one place.
#[test]
fn normalisations_are_documented() {
    let readme_path = package_dir().join("README.md");
    let readme = std::fs::read_to_string(&readme_path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", readme_path.display()));
    for (name, _) in rampart_tests::normalise::NORMALISATIONS {
        assert!(
            readme.contains(&format!("**{name}**")),
            "tests/README.md does not describe the normalisation `{name}`"
        );
    }
}
