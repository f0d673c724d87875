//! The text the detector reads: a normalised view of the original with every character
//! mapped back to the bytes it came from. Identifiers hidden by how they are written —
//! full-width digits, Cyrillic look-alike letters, zero-width characters, `&nbsp;`, HTML
//! tags, typographic dashes and quotes, CR LF — read as plain ASCII here, and a span found
//! in the view covers every original byte it stands for, so replacements land on the
//! original characters (a removed zero-width character inside a name is replaced with it).

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// A normalised view of a text and where each of its bytes came from.
pub(crate) struct NormalisedText<'a> {
    original: &'a str,
    /// The view; equal to the original when `origin` is `None`.
    view: std::borrow::Cow<'a, str>,
    /// Per view byte: the original byte range of the character it belongs to.
    origin: Option<Vec<(u32, u32)>>,
}

impl<'a> NormalisedText<'a> {
    /// The view of `original`. Plain ASCII without entities, tags or carriage returns is
    /// its own view (the common case costs one scan).
    pub(crate) fn new(original: &'a str) -> NormalisedText<'a> {
        let plain = original.bytes().all(|b| b.is_ascii() && !matches!(b, b'&' | b'<' | b'\r' | b'_'));
        if plain {
            return NormalisedText { original, view: original.into(), origin: None };
        }
        let mut builder = Builder { view: String::with_capacity(original.len()), origin: Vec::new() };
        let mut at = 0;
        while at < original.len() {
            at = builder.step(original, at);
        }
        let Builder { view, origin } = builder;
        fold_lookalike_words(&view, &origin).map_or_else(
            || NormalisedText { original, view: view.into(), origin: Some(origin) },
            |(folded, folded_origin)| NormalisedText {
                original,
                view: folded.into(),
                origin: Some(folded_origin),
            },
        )
    }

    /// The text to detect in.
    pub(crate) fn view(&self) -> &str {
        &self.view
    }

    /// The original byte range that the view's `start..end` stands for (`start < end`).
    pub(crate) fn to_original(&self, start: usize, end: usize) -> (usize, usize) {
        match &self.origin {
            None => (start, end),
            Some(origin) => {
                let first = origin[start].0 as usize;
                let last = origin[end - 1].1 as usize;
                (first, last.max(first).min(self.original.len()))
            }
        }
    }
}

struct Builder {
    view: String,
    origin: Vec<(u32, u32)>,
}

impl Builder {
    /// Appends `text` as standing for `original[start..end]`.
    fn push(&mut self, text: &str, start: usize, end: usize) {
        self.view.push_str(text);
        self.origin.extend(std::iter::repeat_n((start as u32, end as u32), text.len()));
    }

    fn push_char(&mut self, c: char, start: usize, end: usize) {
        let mut buffer = [0u8; 4];
        self.push(c.encode_utf8(&mut buffer), start, end);
    }

    /// [`Builder::step`] on `original[..end]`, so nothing past `end` is read as part of it.
    fn step_within(&mut self, original: &str, at: usize, end: usize) -> usize {
        let mut inner = Builder { view: String::new(), origin: Vec::new() };
        let next = at + inner.step(&original[at..end], 0);
        self.view.push_str(&inner.view);
        self.origin.extend(inner.origin.iter().map(|&(s, e)| (s + at as u32, e + at as u32)));
        next
    }

    /// Normalises what starts at byte `at` of `original`; returns where the next step starts.
    fn step(&mut self, original: &str, at: usize) -> usize {
        let rest = &original[at..];
        let c = rest.chars().next().unwrap_or(' ');
        let next = at + c.len_utf8();
        match c {
            '&' => {
                if let Some((decoded, len)) = html_entity(rest) {
                    // The decoded character is normalised in turn (`&nbsp;` is a space).
                    let mut inner = Builder { view: String::new(), origin: Vec::new() };
                    let mut encoded = [0u8; 4];
                    inner.step(decoded.encode_utf8(&mut encoded), 0);
                    self.push(&inner.view, at, at + len);
                    return at + len;
                }
                self.push_char('&', at, next);
                next
            }
            '<' => {
                if let Some((replacement, len)) = html_tag(rest) {
                    if let Some(r) = replacement {
                        self.push_char(r, at, at + len);
                    }
                    // Attribute values (`href="mailto:…"`, `title="…"`) can hold PHI: they
                    // stay in the view, each between spaces, mapped to their own bytes.
                    for (start, end) in attribute_values(&rest[..len]) {
                        self.push_char(' ', at, at + len);
                        let mut inner = at + start;
                        while inner < at + end {
                            inner = self.step_within(original, inner, at + end);
                        }
                        self.push_char(' ', at, at + len);
                    }
                    return at + len;
                }
                self.push_char('<', at, next);
                next
            }
            '\r' => {
                // CR LF is one line break; a lone CR is one too.
                if rest.as_bytes().get(1) == Some(&b'\n') {
                    self.push_char('\n', at, next + 1);
                    next + 1
                } else {
                    self.push_char('\n', at, next);
                    next
                }
            }
            '_' => {
                // Form blanks ("__Smith__", "_S_") read as spaces; "patient_name",
                // "c.68_69del" and "j_doe@" keep theirs.
                let glued = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric());
                let inner =
                    glued(original[..at].chars().next_back()) && glued(original[next..].chars().next());
                self.push_char(if inner { '_' } else { ' ' }, at, next);
                next
            }
            c if c.is_ascii() => {
                self.push_char(c, at, next);
                next
            }
            c if is_invisible(c) => next,
            c => {
                if let Some(simple) = simple_fold(c) {
                    self.push_char(simple, at, next);
                    return next;
                }
                // A base character with its combining marks normalises as one cluster.
                let mut end = next;
                for m in original[next..].chars() {
                    if !is_combining_mark(m) {
                        break;
                    }
                    end += m.len_utf8();
                }
                let cluster: String = original[at..end].nfkc().collect();
                let mut folded = String::with_capacity(cluster.len());
                for n in cluster.chars() {
                    if is_invisible(n) {
                        continue;
                    }
                    folded.push(simple_fold(n).unwrap_or(n));
                }
                self.push(&folded, at, end);
                end
            }
        }
    }
}

/// Characters that show nothing: zero-width spaces and joiners, direction marks, the soft
/// hyphen, the byte-order mark, variation selectors.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}'
        | '\u{E0000}'..='\u{E007F}')
}

/// Spaces, dashes and quotes of every width to their ASCII form.
fn simple_fold(c: char) -> Option<char> {
    Some(match c {
        '\u{00A0}' | '\u{1680}' | '\u{2000}'..='\u{200A}' | '\u{202F}' | '\u{205F}' | '\u{3000}' => ' ',
        '\u{2028}' | '\u{2029}' | '\u{0085}' => '\n',
        '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{FE58}' | '\u{FE63}' | '\u{FF0D}' | '\u{2043}' => '-',
        '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}' | '\u{2032}' | '\u{02BC}' | '\u{FF07}'
        | '\u{0060}' | '\u{00B4}' => '\'',
        '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{201F}' | '\u{2033}' | '\u{FF02}' => '"',
        '\u{2044}' | '\u{2215}' => '/',
        _ => return None,
    })
}

/// Cyrillic and Greek letters drawn like Latin ones.
fn lookalike(c: char) -> Option<char> {
    Some(match c {
        'А' | 'Α' => 'A',
        'В' | 'Β' => 'B',
        'С' | 'Ϲ' => 'C',
        'Е' | 'Ε' => 'E',
        'Н' | 'Η' => 'H',
        'І' | 'Ι' | 'Ӏ' => 'I',
        'Ј' => 'J',
        'К' | 'Κ' => 'K',
        'М' | 'Μ' => 'M',
        'Ν' => 'N',
        'О' | 'Ο' => 'O',
        'Р' | 'Ρ' => 'P',
        'Ѕ' => 'S',
        'Т' | 'Τ' => 'T',
        'Х' | 'Χ' => 'X',
        'У' | 'Υ' | 'Ү' => 'Y',
        'Ζ' => 'Z',
        'а' | 'α' => 'a',
        'с' | 'ϲ' => 'c',
        'ԁ' => 'd',
        'е' => 'e',
        'һ' => 'h',
        'і' | 'ι' => 'i',
        'ј' => 'j',
        'к' | 'κ' => 'k',
        'ո' => 'n',
        'о' | 'ο' | 'σ' => 'o',
        'р' | 'ρ' => 'p',
        'ԛ' => 'q',
        'ѕ' => 's',
        'υ' => 'u',
        'ν' => 'v',
        'ԝ' | 'ω' => 'w',
        'х' | 'χ' => 'x',
        'у' | 'γ' => 'y',
        _ => return None,
    })
}

/// Folds look-alike letters in words that mix them with Latin letters, or are made of
/// them alone ("Јоhn", "МАRIА"): genuine Cyrillic or Greek words keep their letters.
fn fold_lookalike_words(view: &str, origin: &[(u32, u32)]) -> Option<(String, Vec<(u32, u32)>)> {
    if view.is_ascii() || !view.chars().any(|c| lookalike(c).is_some()) {
        return None;
    }
    let mut out = String::with_capacity(view.len());
    let mut out_origin = Vec::with_capacity(origin.len());
    let mut word: Vec<(usize, char)> = Vec::new();
    let flush = |word: &mut Vec<(usize, char)>, out: &mut String, out_origin: &mut Vec<(u32, u32)>| {
        let latin = word.iter().any(|(_, c)| c.is_ascii_alphabetic());
        let all_lookalike = word.iter().all(|(_, c)| c.is_ascii_alphabetic() || lookalike(*c).is_some());
        let fold = all_lookalike || latin;
        for &(at, c) in word.iter() {
            let written = if fold { lookalike(c).unwrap_or(c) } else { c };
            let mut buffer = [0u8; 4];
            let encoded = written.encode_utf8(&mut buffer);
            out.push_str(encoded);
            out_origin.extend(std::iter::repeat_n(origin[at], encoded.len()));
        }
        word.clear();
    };
    for (at, c) in view.char_indices() {
        if c.is_alphabetic() {
            word.push((at, c));
            continue;
        }
        flush(&mut word, &mut out, &mut out_origin);
        out.push(c);
        out_origin.extend(std::iter::repeat_n(origin[at], c.len_utf8()));
    }
    flush(&mut word, &mut out, &mut out_origin);
    Some((out, out_origin))
}

/// `&name;`, `&#NNN;` or `&#xHH;` at the start of `text`: the character and the length.
fn html_entity(text: &str) -> Option<(char, usize)> {
    let end = text[1..].find(';').map(|i| i + 1).filter(|&i| i <= 10);
    let Some(end) = end else {
        // `&nbsp` without its semicolon is common in exports.
        return text.get(..5).filter(|s| s.eq_ignore_ascii_case("&nbsp")).map(|_| ('\u{00A0}', 5));
    };
    let body = &text[1..end];
    let decoded = if let Some(number) = body.strip_prefix('#') {
        let value = match number.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => number.parse().ok()?,
        };
        char::from_u32(value)?
    } else {
        match body {
            "nbsp" | "NBSP" => '\u{00A0}',
            "amp" | "AMP" => '&',
            "lt" | "LT" => '<',
            "gt" | "GT" => '>',
            "quot" | "QUOT" => '"',
            "apos" => '\'',
            "ndash" => '–',
            "mdash" => '—',
            "lsquo" | "rsquo" | "sbquo" | "prime" => '\'',
            "ldquo" | "rdquo" | "bdquo" => '"',
            "shy" => '\u{00AD}',
            "zwj" => '\u{200D}',
            "zwnj" => '\u{200C}',
            "ensp" | "emsp" | "thinsp" => ' ',
            "hyphen" | "dash" | "minus" => '-',
            "period" => '.',
            "comma" => ',',
            "colon" => ':',
            "sol" => '/',
            "num" => '#',
            "commat" => '@',
            "lpar" => '(',
            "rpar" => ')',
            "deg" => '°',
            "middot" => '·',
            "times" => '×',
            "eacute" => 'é',
            "egrave" => 'è',
            "aacute" => 'á',
            "oacute" => 'ó',
            "iacute" => 'í',
            "uacute" => 'ú',
            "ntilde" => 'ñ',
            "ouml" => 'ö',
            "uuml" => 'ü',
            "auml" => 'ä',
            "ccedil" => 'ç',
            _ => return None,
        }
    };
    Some((decoded, end + 1))
}

/// An HTML tag at the start of `text`: what it reads as (a line break for block tags, a
/// space for table cells, nothing for inline tags) and its length.
fn html_tag(text: &str) -> Option<(Option<char>, usize)> {
    let close = text[1..].find(['>', '<', '\n']).map(|i| i + 1)?;
    if text.as_bytes()[close] != b'>' || close > 300 {
        return None;
    }
    let inner = text[1..close].trim_start_matches('/');
    let name: String =
        inner.chars().take_while(char::is_ascii_alphanumeric).collect::<String>().to_ascii_lowercase();
    let after_name = &inner[name.len()..];
    if !(after_name.is_empty() || after_name.starts_with([' ', '/', '\t'])) {
        return None;
    }
    let reads_as = match name.as_str() {
        "br" | "p" | "div" | "li" | "ul" | "ol" | "tr" | "table" | "tbody" | "thead" | "h1" | "h2" | "h3"
        | "h4" | "h5" | "h6" | "hr" | "pre" | "blockquote" | "section" | "article" | "header" | "footer"
        | "body" | "html" | "head" | "title" | "dd" | "dt" | "dl" => Some('\n'),
        "td" | "th" => Some(' '),
        "span" | "b" | "i" | "u" | "em" | "strong" | "font" | "a" | "sup" | "sub" | "small" | "big"
        | "mark" | "s" | "strike" | "del" | "ins" | "abbr" | "cite" | "code" | "label" | "o:p" | "o" => None,
        _ => return None,
    };
    Some((reads_as, close + 1))
}

/// The byte ranges of the attribute values in `tag` (`<a href="x" title='y' id=z>`).
fn attribute_values(tag: &str) -> Vec<(usize, usize)> {
    let bytes = tag.as_bytes();
    let mut values = Vec::new();
    let mut i = 0;
    while let Some(offset) = tag[i..].find('=') {
        let mut start = i + offset + 1;
        while bytes.get(start).is_some_and(|b| b.is_ascii_whitespace()) {
            start += 1;
        }
        let (value_start, value_end, next) = match bytes.get(start) {
            Some(&quote @ (b'"' | b'\'')) => {
                let end = tag[start + 1..].find(quote as char).map_or(tag.len() - 1, |e| start + 1 + e);
                (start + 1, end, end + 1)
            }
            Some(_) => {
                let end = tag[start..]
                    .find(|c: char| c.is_ascii_whitespace() || c == '>')
                    .map_or(tag.len(), |e| start + e);
                (start, end, end)
            }
            None => break,
        };
        if value_end > value_start {
            values.push((value_start, value_end));
        }
        i = next.max(i + offset + 1);
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The original text under each view match of `needle`.
    fn original_of(text: &str, needle: &str) -> String {
        let normalised = NormalisedText::new(text);
        let at =
            normalised.view().find(needle).unwrap_or_else(|| panic!("{needle:?} in {:?}", normalised.view()));
        let (start, end) = normalised.to_original(at, at + needle.len());
        text[start..end].to_string()
    }

    #[test]
    fn plain_ascii_is_its_own_view() {
        let normalised = NormalisedText::new("Seen by Dr. Smith.");
        assert!(normalised.origin.is_none());
        assert_eq!(normalised.to_original(12, 17), (12, 17));
    }

    #[test]
    fn hidden_characters_entities_and_lookalikes_read_as_ascii_and_map_back() {
        assert_eq!(original_of("SSN １２３-４５-６７８９.", "123-45-6789"), "１２３-４５-６７８９");
        assert_eq!(original_of("Pt Jo\u{200B}hn Smith", "John Smith"), "Jo\u{200B}hn Smith");
        assert_eq!(original_of("Dr.&nbsp;Helen&nbsp;Voss", "Helen Voss"), "Helen&nbsp;Voss");
        assert_eq!(original_of("Dr. <b>Helen</b> Voss", "Helen Voss"), "Helen</b> Voss");
        let linked = "Mail <a href=\"mailto:hvoss@clinic.org\" title='Helen Voss'>her</a>.";
        assert_eq!(original_of(linked, "hvoss@clinic.org"), "hvoss@clinic.org");
        assert_eq!(original_of(linked, "Helen Voss"), "Helen Voss");
        assert_eq!(original_of("<td class=x data-mrn=00417723>", "00417723"), "00417723");
        // Cyrillic о and а inside a Latin name.
        assert_eq!(original_of("Mr. J\u{43e}hn M\u{430}rtin", "John Martin"), "J\u{43e}hn M\u{430}rtin");
        assert_eq!(original_of("call 555\u{2013}0199", "555-0199"), "555\u{2013}0199");
        assert_eq!(original_of("line one\r\nAnna Lee", "\nAnna"), "\r\nAnna");
    }

    #[test]
    fn genuine_cyrillic_words_keep_their_letters() {
        let normalised = NormalisedText::new("диагноз: Smith");
        assert!(normalised.view().starts_with("диагноз"), "{}", normalised.view());
    }

    #[test]
    fn form_blanks_read_as_spaces_and_inner_underscores_stay() {
        let normalised = NormalisedText::new("Last: __Smith__ MI: _S_ key_name c.68_69del");
        assert_eq!(normalised.view(), "Last:   Smith   MI:  S  key_name c.68_69del");
    }

    #[test]
    fn text_that_only_looks_like_markup_stays() {
        let normalised = NormalisedText::new("PSA <4 & rising; x<y and AT&T");
        assert_eq!(normalised.view(), "PSA <4 & rising; x<y and AT&T");
    }
}
