//! Fuzz target: the Dockerfile parser, the stage planner and the word lexer on what the
//! parser returns. None of them may panic; an error always names the file and a line of it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stencil::build::parse::{Args, parse};
use stencil::build::plan::plan;
use stencil::build::words::{Lexer, split_raw};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.lines().count().max(1);
    let file = match parse("Dockerfile", text) {
        Ok(file) => file,
        Err(error) => {
            assert_eq!(error.file, "Dockerfile");
            assert!(
                (1..=lines + 1).contains(&error.line),
                "line {} of {lines}: {error}",
                error.line
            );
            return;
        }
    };
    for instruction in &file.instructions {
        assert!((1..=lines).contains(&instruction.line), "{instruction:?}");
        let lookup = |name: &str| (name.len() % 2 == 0).then(|| format!("<{name}>"));
        let lexer = Lexer::new(file.escape, &lookup);
        if let Args::Text(text) = &instruction.args {
            let _ = lexer.words(text);
            let _ = lexer.word(text);
            let _ = split_raw(text, file.escape);
        }
        let _ = instruction.args_text();
    }
    if let Err(error) = plan("Dockerfile", &file, None) {
        assert!((1..=lines + 1).contains(&error.line), "{error}");
    }
    let _ = plan("Dockerfile", &file, Some("build"));
});
