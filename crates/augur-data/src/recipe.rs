//! Dataset recipes: for each known set, the prompt template, the reference field and the
//! verifier its rows need, so `[data] recipe = "gsm8k"` replaces writing them by hand. A key
//! the config sets itself wins over the recipe's.
//!
//! Field names are those of the sets as the Hub and `../shared/datasets` hold them (GSM8K:
//! `question`/`answer`, MATH-500, AIME24 and AMC23: `problem`/`answer`, Countdown:
//! `numbers`/`target`, HumanEval: `prompt`/`test`/`entry_point`, MBPP: `text`/`test_list`).

/// One set's prompt and verifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recipe {
    pub name: &'static str,
    /// `[data] template`: `{field}` placeholders filled from each row.
    pub template: &'static str,
    /// `[reward] task`: `math`, `countdown` or `code`.
    pub task: &'static str,
    /// `[reward] answer_field` (math): the reference field.
    pub answer_field: Option<&'static str>,
}

macro_rules! math {
    ($name:literal, $field:literal) => {
        Recipe {
            name: $name,
            template: concat!(
                "{",
                $field,
                "}\nPlease reason step by step, and put your final answer within \\boxed{}."
            ),
            task: "math",
            answer_field: Some("answer"),
        }
    };
}

/// Every recipe, by name.
pub const RECIPES: [Recipe; 7] = [
    // `answer` is the worked solution ending in `#### x`; the verifier reads `x` from it.
    math!("gsm8k", "question"),
    math!("math500", "problem"),
    math!("aime24", "problem"),
    math!("amc23", "problem"),
    Recipe {
        name: "countdown",
        template: "Using the numbers {numbers}, create an equation that equals {target}. You can \
                   use basic arithmetic operations (+, -, *, /) and each number must be used \
                   exactly once. Show your work, then give the expression alone in <answer> \
                   </answer> tags, for example <answer> (1 + 2) / 3 </answer>.",
        task: "countdown",
        answer_field: None,
    },
    Recipe {
        name: "humaneval",
        template: "Complete the following Python function. Answer with the whole function in \
                   one ```python code block.\n\n```python\n{prompt}```",
        task: "code",
        answer_field: None,
    },
    Recipe {
        name: "mbpp",
        template: "{text}\nYour code should pass these tests:\n\n{test_list}\n\nAnswer with the \
                   Python code in one ```python code block.",
        task: "code",
        answer_field: None,
    },
];

/// The recipe called `name`; the error lists the known ones.
pub fn recipe(name: &str) -> Result<&'static Recipe, String> {
    RECIPES.iter().find(|r| r.name == name).ok_or_else(|| {
        let known: Vec<&str> = RECIPES.iter().map(|r| r.name).collect();
        format!("unknown recipe {name:?} (known: {})", known.join(", "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOXED: &str = "\nPlease reason step by step, and put your final answer within \\boxed{}.";

    #[test]
    fn names_are_found_and_typos_listed() {
        assert_eq!(
            recipe("gsm8k").unwrap().template,
            format!("{{question}}{BOXED}")
        );
        assert_eq!(recipe("aime24").unwrap().task, "math");
        let err = recipe("gsm8").unwrap_err();
        assert!(
            err.contains("\"gsm8\"") && err.contains("math500, aime24"),
            "{err}"
        );
    }
}
