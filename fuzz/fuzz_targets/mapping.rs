//! Mappings (`mapping`): a mapping file compiled from YAML text, then applied to a JSON body,
//! both from the input (`<yaml>\xff<json>`; 0xFF never occurs in UTF-8). Applying stays
//! within small budgets, gives the same output into a reused value, and gives the same output
//! from the body projected to what `Mapping::reads` says it reads (what flows parse).
#![no_main]

use std::time::Duration;

use crossdock::config::yaml;
use crossdock::mapping::{self, FieldProblem, Limits, MappingFile};
use crossdock::projection::Need;
use crossdock::rules::Rules;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// Small enough that a hostile body or path fails its budget quickly; an output over it is
/// an error the target accepts.
fn limits() -> Limits {
    Limits {
        nodes: 200_000,
        output_bytes: 1 << 20,
        time: Duration::from_secs(2),
        regex_pattern_bytes: 256,
        regex_program_bytes: 1 << 18,
        regexes: 16,
    }
}

fn rules() -> Rules {
    let mut limits = crossdock::rules::Limits::default();
    limits.max_operations = 50_000;
    limits.timeout = Duration::from_secs(2);
    Rules::new(limits)
}

fuzz_target!(|data: &[u8]| {
    let (yaml_bytes, body) = match data.iter().position(|&b| b == 0xff) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b"{}"[..]),
    };
    let Ok(text) = std::str::from_utf8(yaml_bytes) else {
        return;
    };
    let Ok(input) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let Ok((doc, problems)) = yaml::parse(text, &|_| None) else {
        return;
    };
    if !problems.is_empty() {
        return;
    }
    let Ok(file) = yaml::from_doc::<MappingFile>(&doc.value) else {
        return;
    };
    let rules = rules();
    let compiled = match mapping::compile(&file, &rules) {
        Ok(m) => m.with_limits(limits()),
        Err(issues) => {
            for issue in issues {
                let _ = doc
                    .spans
                    .offset_pos(&issue.path, "", issue.offset.unwrap_or(0));
                let _ = issue.to_string();
            }
            return;
        }
    };
    let first = compiled.apply(&rules, &input);
    if let Err(e) = &first {
        let _ = e.to_string();
    }
    if over_budget(&first) {
        return;
    }
    // Into a value that holds an earlier output (of another input) the result is the same.
    let mut reused = serde_json::json!({"stale": [1, {"x": "y"}], "other": "z"});
    if let Ok(v) = &first {
        reused = v.clone();
        if let Some(obj) = reused.as_object_mut() {
            obj.insert("stale".into(), Value::Bool(true));
        }
    }
    let again = compiled.apply_into(&rules, &input, &mut reused);
    if !over_budget(&again.clone().map(|()| Value::Null)) {
        match (&first, &again) {
            (Ok(a), Ok(())) => assert_eq!(a, &reused, "apply_into differs from apply"),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
            (a, b) => panic!("apply {a:?} but apply_into {b:?}"),
        }
    }
    // A flow parses only what the mapping reads: the output must not change.
    if let Some(paths) = compiled.reads() {
        let mut need = Need::default();
        for p in &paths {
            need.add_jsonpath(p.as_str());
        }
        let projected = compiled.apply(&rules, &need.project(&input));
        if !over_budget(&projected) {
            match (&first, &projected) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "projected input maps differently ({need:?})"),
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
                (a, b) => panic!("whole input {a:?} but projected {b:?} ({need:?})"),
            }
        }
    }
});

/// Budget errors depend on the clock and on how much was walked, so results are only
/// compared when neither ran out.
fn over_budget(r: &Result<Value, mapping::MappingError>) -> bool {
    match r {
        Err(e) => {
            let text = e.to_string().to_lowercase();
            matches!(*e.problem, FieldProblem::Budget { .. })
                || text.contains("time")
                || text.contains("too many")
        }
        Ok(_) => false,
    }
}
