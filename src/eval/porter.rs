//! The Porter stemmer as the Python package `nltk` runs it by default (its "NLTK
//! extensions" mode), which is what `rouge-score` stems with. The published algorithm
//! (Porter 1980) with the extensions that mode adds: a short table of irregular forms,
//! words of one or two letters left alone, `ies`/`ied` on four-letter words giving `ie`,
//! `y` → `i` only after a consonant that is not the first letter, `alli` handled before
//! the rest of step 2 (then step 2 again), `fulli` → `ful`, `logi` → `log`, and a
//! two-letter vowel-consonant word counting as ending consonant-vowel-consonant.
//!
//! Works on lower-case ASCII words (`rouge-score` has already reduced tokens to `[a-z0-9]`);
//! other bytes count as consonants.

/// Irregular forms and their stems, looked up before any rule.
const IRREGULAR: &[(&str, &str)] = &[
    ("sky", "sky"),
    ("skies", "sky"),
    ("dying", "die"),
    ("lying", "lie"),
    ("tying", "tie"),
    ("news", "news"),
    ("innings", "inning"),
    ("inning", "inning"),
    ("outings", "outing"),
    ("outing", "outing"),
    ("cannings", "canning"),
    ("canning", "canning"),
    ("howe", "howe"),
    ("proceed", "proceed"),
    ("exceed", "exceed"),
    ("succeed", "succeed"),
];

/// The stem of a lower-case ASCII word.
pub fn porter_stem(word: &str) -> String {
    if let Some((_, stem)) = IRREGULAR.iter().find(|(form, _)| *form == word) {
        return (*stem).to_string();
    }
    if word.chars().count() <= 2 {
        return word.to_string();
    }
    let mut w: Vec<u8> = word.as_bytes().to_vec();
    step1a(&mut w);
    step1b(&mut w);
    step1c(&mut w);
    step2(&mut w);
    step3(&mut w);
    step4(&mut w);
    step5a(&mut w);
    step5b(&mut w);
    String::from_utf8_lossy(&w).into_owned()
}

/// Whether letter `i` of `w` is a consonant: not a, e, i, o, u, and `y` only when it
/// follows a vowel (or starts the word).
fn is_consonant(w: &[u8], i: usize) -> bool {
    match w[i] {
        b'a' | b'e' | b'i' | b'o' | b'u' => false,
        b'y' => i == 0 || !is_consonant(w, i - 1),
        _ => true,
    }
}

/// m in [C](VC){m}[V]: how many vowel-to-consonant changes the word has.
fn measure(w: &[u8]) -> usize {
    (1..w.len()).filter(|&i| !is_consonant(w, i - 1) && is_consonant(w, i)).count()
}

fn contains_vowel(w: &[u8]) -> bool {
    (0..w.len()).any(|i| !is_consonant(w, i))
}

fn ends_double_consonant(w: &[u8]) -> bool {
    let n = w.len();
    n >= 2 && w[n - 1] == w[n - 2] && is_consonant(w, n - 1)
}

/// *o: ends consonant-vowel-consonant, the last not w, x or y (or is a two-letter
/// vowel-consonant word, the extension).
fn ends_cvc(w: &[u8]) -> bool {
    let n = w.len();
    (n >= 3
        && is_consonant(w, n - 3)
        && !is_consonant(w, n - 2)
        && is_consonant(w, n - 1)
        && !matches!(w[n - 1], b'w' | b'x' | b'y'))
        || (n == 2 && !is_consonant(w, 0) && is_consonant(w, 1))
}

/// A rule's condition on the stem left once the suffix is removed.
type Condition<'a> = &'a dyn Fn(&[u8]) -> bool;

/// The first rule whose suffix ends the word decides: replaced when its condition holds
/// on the stem, otherwise the word stays as it is (no later rule is tried).
fn apply_first(w: &mut Vec<u8>, rules: &[(&str, &str, Option<Condition<'_>>)]) {
    for (suffix, replacement, condition) in rules {
        if w.ends_with(suffix.as_bytes()) {
            let stem_len = w.len() - suffix.len();
            if condition.is_none_or(|c| c(&w[..stem_len])) {
                w.truncate(stem_len);
                w.extend_from_slice(replacement.as_bytes());
            }
            return;
        }
    }
}

fn positive(stem: &[u8]) -> bool {
    measure(stem) > 0
}

fn above_one(stem: &[u8]) -> bool {
    measure(stem) > 1
}

fn replace_end(w: &mut Vec<u8>, suffix_len: usize, replacement: &str) {
    w.truncate(w.len() - suffix_len);
    w.extend_from_slice(replacement.as_bytes());
}

fn step1a(w: &mut Vec<u8>) {
    if w.ends_with(b"ies") && w.len() == 4 {
        replace_end(w, 3, "ie");
        return;
    }
    apply_first(w, &[("sses", "ss", None), ("ies", "i", None), ("ss", "ss", None), ("s", "", None)]);
}

fn step1b(w: &mut Vec<u8>) {
    if w.ends_with(b"ied") {
        let replacement = if w.len() == 4 { "ie" } else { "i" };
        replace_end(w, 3, replacement);
        return;
    }
    if w.ends_with(b"eed") {
        if measure(&w[..w.len() - 3]) > 0 {
            w.pop();
        }
        return;
    }
    let cut = [2usize, 3]
        .into_iter()
        .zip([&b"ed"[..], &b"ing"[..]])
        .find(|(n, suffix)| w.ends_with(suffix) && contains_vowel(&w[..w.len() - n]))
        .map(|(n, _)| n);
    let Some(cut) = cut else { return };
    w.truncate(w.len() - cut);
    if w.ends_with(b"at") || w.ends_with(b"bl") || w.ends_with(b"iz") {
        w.push(b'e');
    } else if ends_double_consonant(w) {
        if !matches!(w[w.len() - 1], b'l' | b's' | b'z') {
            w.pop();
        }
    } else if measure(w) == 1 && ends_cvc(w) {
        w.push(b'e');
    }
}

fn step1c(w: &mut [u8]) {
    let n = w.len();
    if w.ends_with(b"y") && n - 1 > 1 && is_consonant(w, n - 2) {
        w[n - 1] = b'i';
    }
}

fn step2(w: &mut Vec<u8>) {
    if w.ends_with(b"alli") && positive(&w[..w.len() - 4]) {
        replace_end(w, 4, "al");
        step2(w);
        return;
    }
    let whole = w.clone();
    let logi = move |_: &[u8]| positive(&whole[..whole.len() - 3]);
    let p: Condition<'_> = &positive;
    apply_first(
        w,
        &[
            ("ational", "ate", Some(p)),
            ("tional", "tion", Some(p)),
            ("enci", "ence", Some(p)),
            ("anci", "ance", Some(p)),
            ("izer", "ize", Some(p)),
            ("bli", "ble", Some(p)),
            ("alli", "al", Some(p)),
            ("entli", "ent", Some(p)),
            ("eli", "e", Some(p)),
            ("ousli", "ous", Some(p)),
            ("ization", "ize", Some(p)),
            ("ation", "ate", Some(p)),
            ("ator", "ate", Some(p)),
            ("alism", "al", Some(p)),
            ("iveness", "ive", Some(p)),
            ("fulness", "ful", Some(p)),
            ("ousness", "ous", Some(p)),
            ("aliti", "al", Some(p)),
            ("iviti", "ive", Some(p)),
            ("biliti", "ble", Some(p)),
            ("fulli", "ful", Some(p)),
            // The `l` stays with the stem: `geologi` → `geolog` like `philologi`.
            ("logi", "log", Some(&logi)),
        ],
    );
}

fn step3(w: &mut Vec<u8>) {
    let p: Condition<'_> = &positive;
    apply_first(
        w,
        &[
            ("icate", "ic", Some(p)),
            ("ative", "", Some(p)),
            ("alize", "al", Some(p)),
            ("iciti", "ic", Some(p)),
            ("ical", "ic", Some(p)),
            ("ful", "", Some(p)),
            ("ness", "", Some(p)),
        ],
    );
}

fn step4(w: &mut Vec<u8>) {
    let g: Condition<'_> = &above_one;
    let ion = |stem: &[u8]| above_one(stem) && matches!(stem.last(), Some(b's' | b't'));
    apply_first(
        w,
        &[
            ("al", "", Some(g)),
            ("ance", "", Some(g)),
            ("ence", "", Some(g)),
            ("er", "", Some(g)),
            ("ic", "", Some(g)),
            ("able", "", Some(g)),
            ("ible", "", Some(g)),
            ("ant", "", Some(g)),
            ("ement", "", Some(g)),
            ("ment", "", Some(g)),
            ("ent", "", Some(g)),
            ("ion", "", Some(&ion)),
            ("ou", "", Some(g)),
            ("ism", "", Some(g)),
            ("ate", "", Some(g)),
            ("iti", "", Some(g)),
            ("ous", "", Some(g)),
            ("ive", "", Some(g)),
            ("ize", "", Some(g)),
        ],
    );
}

fn step5a(w: &mut Vec<u8>) {
    if w.ends_with(b"e") {
        let stem = &w[..w.len() - 1];
        let m = measure(stem);
        if m > 1 || (m == 1 && !ends_cvc(stem)) {
            w.pop();
        }
    }
}

fn step5b(w: &mut Vec<u8>) {
    if w.ends_with(b"ll") && measure(&w[..w.len() - 1]) > 1 {
        w.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::porter_stem;

    #[test]
    fn examples_from_the_paper() {
        for (word, stem) in [
            ("caresses", "caress"),
            ("ponies", "poni"),
            ("caress", "caress"),
            ("cats", "cat"),
            ("feed", "feed"),
            ("agreed", "agre"),
            ("plastered", "plaster"),
            ("bled", "bled"),
            ("motoring", "motor"),
            ("sing", "sing"),
            ("conflated", "conflat"),
            ("troubled", "troubl"),
            ("sized", "size"),
            ("hopping", "hop"),
            ("tanned", "tan"),
            ("falling", "fall"),
            ("hissing", "hiss"),
            ("fizzed", "fizz"),
            ("failing", "fail"),
            ("filing", "file"),
            ("happy", "happi"),
            ("relational", "relat"),
            ("conditional", "condit"),
            ("valenci", "valenc"),
            ("digitizer", "digit"),
            ("conformabli", "conform"),
            ("vietnamization", "vietnam"),
            ("predication", "predic"),
            ("operator", "oper"),
            ("feudalism", "feudal"),
            ("decisiveness", "decis"),
            ("hopefulness", "hope"),
            ("formaliti", "formal"),
            ("sensitiviti", "sensit"),
            ("triplicate", "triplic"),
            ("formative", "form"),
            ("electrical", "electr"),
            ("revival", "reviv"),
            ("allowance", "allow"),
            ("inference", "infer"),
            ("airliner", "airlin"),
            ("adjustable", "adjust"),
            ("replacement", "replac"),
            ("adoption", "adopt"),
            ("probate", "probat"),
            ("rate", "rate"),
            ("cease", "ceas"),
            ("controll", "control"),
            ("roll", "roll"),
        ] {
            assert_eq!(porter_stem(word), stem, "{word}");
        }
    }

    #[test]
    fn extensions_of_the_default_nltk_mode() {
        // Irregular forms; short words; four-letter -ies/-ied; y after the first letter.
        assert_eq!(porter_stem("skies"), "sky");
        assert_eq!(porter_stem("dying"), "die");
        assert_eq!(porter_stem("as"), "as");
        assert_eq!(porter_stem("ties"), "tie");
        assert_eq!(porter_stem("died"), "die");
        assert_eq!(porter_stem("cried"), "cri");
        assert_eq!(porter_stem("by"), "by");
        assert_eq!(porter_stem("say"), "say");
        // alli first, then step 2 again; fulli; logi keeps its l with the stem.
        assert_eq!(porter_stem("radically"), "radic");
        assert_eq!(porter_stem("hopefully"), "hope");
        assert_eq!(porter_stem("geology"), "geolog");
        assert_eq!(porter_stem("cardiology"), "cardiolog");
    }
}
