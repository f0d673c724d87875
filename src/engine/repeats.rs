//! Repetition control for small models, which tend to repeat the last array item until
//! the array is full. A scanner follows the compact JSON as it is generated; when an
//! array item is finished and equals an earlier item of the same array, the runner rolls
//! the item back and closes the array instead.

/// An array item that repeats an earlier one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepeatedItem {
    /// Byte offset of the separator (`,`) before the repeated item: the output is cut here.
    pub cut_at: usize,
}

#[derive(Debug, Clone)]
struct Container {
    is_array: bool,
    /// Start of the item being read, if any.
    item_start: Option<usize>,
    /// Offset of the `,` before the item being read.
    separator: Option<usize>,
    /// Finished items: their byte ranges.
    items: Vec<(usize, usize)>,
}

/// Follows compact JSON output byte by byte.
#[derive(Debug, Clone, Default)]
pub struct ArrayRepeatScanner {
    stack: Vec<Container>,
    in_string: bool,
    escaped: bool,
    scanned: usize,
}

impl ArrayRepeatScanner {
    /// Scans `output[self.scanned..]` (the output so far, of which earlier calls saw a
    /// prefix) and reports the first repeated array item.
    pub fn scan(&mut self, output: &[u8]) -> Option<RepeatedItem> {
        while self.scanned < output.len() {
            let i = self.scanned;
            let byte = output[i];
            self.scanned += 1;
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if byte == b'\\' {
                    self.escaped = true;
                } else if byte == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match byte {
                b',' | b']' => {
                    if let Some(repeat) = self.end_item(output, i) {
                        return Some(repeat);
                    }
                    if byte == b']' {
                        self.stack.pop();
                    } else if let Some(top) = self.stack.last_mut() {
                        top.separator = Some(i);
                    }
                }
                b'}' => {
                    self.stack.pop();
                }
                b' ' | b'\n' | b'\t' | b'\r' | b':' => {}
                _ => {
                    self.begin_item(i);
                    match byte {
                        b'"' => self.in_string = true,
                        b'{' | b'[' => self.stack.push(Container {
                            is_array: byte == b'[',
                            item_start: None,
                            separator: None,
                            items: Vec::new(),
                        }),
                        _ => {}
                    }
                }
            }
        }
        None
    }

    /// Whether the scanned output ends inside a string.
    pub fn in_string(&self) -> bool {
        self.in_string
    }

    fn begin_item(&mut self, at: usize) {
        if let Some(top) = self.stack.last_mut()
            && top.is_array
            && top.item_start.is_none()
        {
            top.item_start = Some(at);
        }
    }

    /// Closes the item being read in the innermost array; a repeat is reported.
    fn end_item(&mut self, output: &[u8], end: usize) -> Option<RepeatedItem> {
        let top = self.stack.last_mut()?;
        if !top.is_array {
            return None;
        }
        let start = top.item_start.take()?;
        let item = &output[start..end];
        let repeated = top.items.iter().any(|&(s, e)| &output[s..e] == item);
        top.items.push((start, end));
        match (repeated, top.separator) {
            (true, Some(cut_at)) => Some(RepeatedItem { cut_at }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_repeat(text: &str) -> Option<usize> {
        let mut scanner = ArrayRepeatScanner::default();
        // Feed in uneven pieces, as tokens arrive.
        let bytes = text.as_bytes();
        let mut end = 0;
        while end < bytes.len() {
            end = (end + 3).min(bytes.len());
            if let Some(r) = scanner.scan(&bytes[..end]) {
                return Some(r.cut_at);
            }
        }
        None
    }

    #[test]
    fn repeated_items_are_found_at_their_separator() {
        let text = r#"{"a":[{"n":"x","d":"1"},{"n":"y","d":"1"},{"n":"x","d":"1"},{"n":"x","d":"1"}]}"#;
        let cut = first_repeat(text).unwrap();
        assert_eq!(&text[..cut], r#"{"a":[{"n":"x","d":"1"},{"n":"y","d":"1"}"#);
        let strings = r#"{"allergies":["sulfa","latex","sulfa"],"x":1}"#;
        assert_eq!(&strings[..first_repeat(strings).unwrap()], r#"{"allergies":["sulfa","latex""#);
    }

    #[test]
    fn distinct_items_and_brackets_inside_strings_are_fine() {
        assert_eq!(first_repeat(r#"{"a":["x,]","x]","[x"],"b":[1,2,3],"c":[[1],[2]]}"#), None);
        // Equal values in different arrays are not repeats.
        assert_eq!(first_repeat(r#"{"a":["x"],"b":["x"],"c":[{"d":["x"]},{"d":["y"]}]}"#), None);
        assert_eq!(first_repeat(r#"{"a":["q\"x","q\"y"]}"#), None);
    }
}
