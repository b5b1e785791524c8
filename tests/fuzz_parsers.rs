//! Random-input fuzzing on stable: the same entry points as the `cargo fuzz` targets in
//! `fuzz/` (which need nightly), fed a fixed number of inputs per run: random bytes, and
//! the checked-in corpus mutated (bytes flipped, inserted, removed, cut short, spliced).
//! No coverage guidance, so it finds less than libFuzzer, but it runs everywhere and
//! every run is reproducible from the seed proptest prints on failure.

use std::path::Path;

use freshteam_operator::fuzzing;
use proptest::prelude::*;
use proptest::test_runner::Config;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|f| std::fs::read(f.unwrap().path()).unwrap())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "empty corpus {target}");
    files
}

#[derive(Clone, Debug)]
enum Edit {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    Truncate(usize),
    /// Repeats a slice: deep nesting, long values, many entries.
    Repeat(usize, usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let interesting = prop::sample::select(vec![
        b"\"".to_vec(),
        b"[".to_vec(),
        b"{".to_vec(),
        b"\\u".to_vec(),
        b"99999999999999999999".to_vec(),
        b"-1".to_vec(),
        b"null".to_vec(),
        "é\u{feff}".as_bytes().to_vec(),
        b"\n\n".to_vec(),
        b"<".to_vec(),
        b">; rel=next, ".to_vec(),
        b": &a [*a, *a]".to_vec(),
        b"\n---\n".to_vec(),
    ]);
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Flip(i, b)),
        (
            any::<usize>(),
            prop_oneof![interesting, prop::collection::vec(any::<u8>(), 1..8)]
        )
            .prop_map(|(i, bytes)| Edit::Insert(i, bytes)),
        (any::<usize>(), 1usize..64).prop_map(|(i, n)| Edit::Remove(i, n)),
        any::<usize>().prop_map(Edit::Truncate),
        (any::<usize>(), 1usize..32, 1usize..200)
            .prop_map(|(i, n, times)| Edit::Repeat(i, n, times)),
    ]
}

fn apply(mut data: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let len = data.len().max(1);
        match e {
            Edit::Flip(i, b) if !data.is_empty() => {
                let i = i % data.len();
                data[i] ^= b | 1;
            }
            Edit::Flip(..) => {}
            Edit::Insert(i, bytes) => {
                let i = i % (data.len() + 1);
                data.splice(i..i, bytes.iter().copied());
            }
            Edit::Remove(i, n) => {
                let i = i % len;
                let end = (i + n).min(data.len());
                if i < end {
                    data.drain(i..end);
                }
            }
            Edit::Truncate(i) => data.truncate(i % len),
            Edit::Repeat(i, n, times) => {
                let i = i % len;
                let end = (i + n).min(data.len());
                if i < end {
                    let piece = data[i..end].to_vec();
                    for _ in 0..*times {
                        data.splice(end..end, piece.iter().copied());
                    }
                }
            }
        }
    }
    data
}

/// Inputs: a corpus file with up to 8 edits, or plain random bytes.
fn inputs(target: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let seeds = corpus(target);
    prop_oneof![
        3 => (prop::sample::select(seeds), prop::collection::vec(edit(), 1..8))
            .prop_map(|(seed, edits)| apply(seed, &edits)),
        1 => prop::collection::vec(any::<u8>(), 0..512),
    ]
}

/// Executions per target per run: `FUZZ_CASES`, default 3000.
fn config() -> Config {
    let cases = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(3000);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn freshteam_responses_never_panic(data in inputs("freshteam_response")) {
        fuzzing::freshteam_response(&data);
    }

    #[test]
    fn scim_responses_never_panic(data in inputs("scim_response")) {
        fuzzing::scim_response(&data);
    }

    #[test]
    fn manifests_never_panic(data in inputs("manifest")) {
        fuzzing::manifest(&data);
    }
}
