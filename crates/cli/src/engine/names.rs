//! Generated container names, `adjective_surname` as docker makes them (`focused_curie`).
//!
//! The surnames are of scientists and engineers; the words are stencil's own lists. A name
//! is a pure function of a seed and an attempt number, so callers retry with new seeds
//! until the store has no container of that name.
//!
//! ```
//! let name = stencil::engine::names::generate(42, 0);
//! let (adjective, surname) = name.split_once('_').unwrap();
//! assert!(!adjective.is_empty() && !surname.is_empty());
//! ```

const ADJECTIVES: &[&str] = &[
    "agile", "amber", "bold", "brave", "bright", "calm", "clever", "cosmic", "crisp", "curious",
    "daring", "deft", "eager", "earnest", "elated", "fervent", "fond", "gentle", "glad", "golden",
    "happy", "hardy", "honest", "humble", "jolly", "keen", "kind", "lively", "lucid", "merry",
    "mellow", "modest", "nimble", "noble", "patient", "peaceful", "placid", "plucky", "proud",
    "quick", "quiet", "radiant", "rapid", "serene", "sharp", "shiny", "silent", "steady", "stoic",
    "sunny", "swift", "tender", "tidy", "upbeat", "vivid", "warm", "wise", "witty", "zealous",
    "zesty",
];

const SURNAMES: &[&str] = &[
    "agnesi",
    "babbage",
    "bardeen",
    "bohr",
    "boole",
    "borg",
    "cerf",
    "curie",
    "darwin",
    "dijkstra",
    "einstein",
    "euler",
    "faraday",
    "fermat",
    "fermi",
    "feynman",
    "franklin",
    "galileo",
    "gauss",
    "goldberg",
    "hamilton",
    "hawking",
    "hopper",
    "hypatia",
    "kepler",
    "knuth",
    "kowalevski",
    "lamarr",
    "lamport",
    "leavitt",
    "liskov",
    "lovelace",
    "maxwell",
    "meitner",
    "mendel",
    "mirzakhani",
    "newton",
    "noether",
    "pascal",
    "pasteur",
    "planck",
    "raman",
    "ritchie",
    "shannon",
    "sinoussi",
    "somerville",
    "tesla",
    "thompson",
    "torvalds",
    "turing",
    "volta",
    "wilson",
    "wozniak",
    "wright",
    "yalow",
    "yonath",
];

/// The name for `seed` on try `attempt` (from the third try on, a digit is appended, as
/// docker does after collisions).
pub fn generate(seed: u64, attempt: u32) -> String {
    let adjective = ADJECTIVES[(seed % ADJECTIVES.len() as u64) as usize];
    let surname = SURNAMES[((seed / ADJECTIVES.len() as u64) % SURNAMES.len() as u64) as usize];
    if attempt >= 2 {
        format!("{adjective}_{surname}{}", seed % 10)
    } else {
        format!("{adjective}_{surname}")
    }
}
