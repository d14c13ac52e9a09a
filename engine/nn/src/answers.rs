//! Turning free-text answers of vision-language models into labels.
//!
//! Generative models answer in prose ("The person looks happy, not sad.").
//! The metrics score labels, so every answer is first parsed into a
//! [`Parsed`] value: a class index, a set of indices (AUs, attributes), a
//! number (age), a yes/no, or [`Parsed::Unparseable`] with a [`Reason`].
//! An answer is never guessed into a label: when the rules below do not
//! give exactly one reading, the answer is unparseable, and a
//! [`ParseTally`] says how many were and why, so a report can state it.
//!
//! # Words
//!
//! Text is lowercased and cut into words (runs of letters and digits, in
//! any script). `_`, `-`, `/`, quotes and markdown marks only separate
//! words, so `Wearing_Hat` reads as "wearing hat" and `thirty-four` as
//! "thirty four". An apostrophe inside a word splits it ("o'clock" is
//! "o clock"), except that a trailing `n't` becomes the word "not"
//! ("isn't" is "is not"). `, ; : ( ) [ ] { } | — –` end a clause;
//! `. ! ? …` and line breaks end a sentence (and a clause).
//!
//! # Names
//!
//! A name (class, synonym, attribute) matches a run of whole words, so
//! "fearless" does not name "fear" and "unhappy" does not name "happy":
//! derived words count only when listed as synonyms (the default synonyms
//! of "sad" include "sadness"). Articles (`a`, `an`, `the`) between the
//! words of a name are skipped, so "wearing a hat" names `Wearing_Hat`.
//! At each word the longest name that matches wins and its words are
//! used up, so "happily surprised" names that compound class and not
//! "surprised". A class named several times is one class.
//!
//! # Negation
//!
//! A mention is negated when one of the five words before it, in the same
//! clause, is a negator (`not`, `no`, `never`, `without`, `nor`,
//! `neither`, `non`, `cannot`, `nothing`, `lack(s|ing)`, `absence`,
//! `absent`, or the pairs `rather than`, `other than`, `instead of`);
//! `but`, `however`, `although`, `though`, `yet`, `whereas`, `while` and
//! `and` end that look-back. So "not happy", "no sign of happiness",
//! "doesn't look angry" and "sadness rather than anger" do not name the
//! negated class, while in "not angry and clearly happy" happiness stays
//! named. "No doubt", "no question", "no wonder" and "not only" are not
//! negations. A negated mention names nothing (it never names the
//! opposite class); for yes/no answers a negated term counts as its
//! opposite ("not fake" is real).
//!
//! # Where the answer is read
//!
//! Classes: if the text has an explicit answer, `answer`, `emotion`,
//! `expression`, `label` or `prediction` followed by `:`, `is` or `was`,
//! the rest of that sentence is read first, the last such sentence that
//! names a class deciding ("Brows raised as in surprise. Answer: fear" is
//! fear). Otherwise, or when those sentences name no class, the whole
//! text is read. Exactly one class named is [`Parsed::Class`]; none is
//! [`NO_CLASS`]; several are [`SEVERAL_CLASSES`]. Reasoning answers that
//! weigh several emotions without an explicit answer therefore end up
//! unparseable, which is the honest outcome.
//!
//! Yes/no: an explicit `answer:` sentence first, then a leading term that
//! ends its clause ("Yes, …", "Fake."), then the whole text; both
//! polarities named is [`BOTH_ANSWERS`], none is [`NEITHER_ANSWER`]. A
//! term that is itself a negator ("no") counts only where it ends its
//! clause, so "no doubt" or "no smile" is not an answer "no".
//!
//! AUs: `AU` followed by a number, with or without a space ("AU12",
//! "au 4", "AU01", "AU12(L)", "AU12C", "AU1+AU2") or "action unit 12".
//! Numbers not in the scored set are ignored and reported
//! ([`AuAnswer::unknown`]). Negated mentions ("no AU4") are not present.
//! An answer with no mention is an empty set when it says "none" or "no
//! AUs"/"no action units", and [`NO_AU`] otherwise. Lists after a plural
//! ("AUs 1, 2 and 4") are not read.
//!
//! Numbers: the first number written in digits that is not glued to a
//! word before it ("about 34 years old" is 34, "34.5" is 34.5, "-3" is
//! -3, "30-35" is 30, the 12 of "AU12" is skipped); a comma is not a
//! decimal or thousands separator. Only without digits are spelled-out
//! numbers up to 99 read ("thirty-four"); "one" on its own is skipped, as
//! it is mostly a pronoun ("this one").
//!
//! Attributes and other multi-label sets: every name asserted (named and
//! not negated) anywhere; an answer that asserts none is the empty set.

use std::collections::BTreeMap;
use std::fmt;

/// Category: the answer has no words at all.
pub const EMPTY: &str = "empty answer";
/// Category: no class is named (or only negated ones).
pub const NO_CLASS: &str = "no class name";
/// Category: two or more different classes are named.
pub const SEVERAL_CLASSES: &str = "several classes named";
/// Category: no AU is mentioned and no explicit "none" is given.
pub const NO_AU: &str = "no AU named";
/// Category: no number is found.
pub const NO_NUMBER: &str = "no number";
/// Category: neither a positive nor a negative term is given.
pub const NEITHER_ANSWER: &str = "neither answer named";
/// Category: both a positive and a negative term are given.
pub const BOTH_ANSWERS: &str = "both answers named";
/// Category: the label names or terms themselves are unusable (a setup
/// error, reported per answer because parsers must not panic).
pub const BAD_SETUP: &str = "invalid label names";

/// Terms [`parse_yes_no`] reads as yes.
pub const YES_WORDS: &[&str] = &["yes", "true", "correct", "yeah", "yep"];
/// Terms [`parse_yes_no`] reads as no.
pub const NO_WORDS: &[&str] = &["no", "false", "incorrect", "nope"];

/// Terms [`parse_real_fake`] reads as fake (a manipulated face).
pub const FAKE_WORDS: &[&str] = &[
    "fake",
    "manipulated",
    "manipulation",
    "deepfake",
    "forged",
    "forgery",
    "tampered",
    "altered",
    "synthetic",
    "synthesized",
    "swapped",
];
/// Terms [`parse_real_fake`] reads as real.
pub const REAL_WORDS: &[&str] = &[
    "real",
    "authentic",
    "genuine",
    "pristine",
    "unaltered",
    "original",
    "unmanipulated",
];

/// Why an answer could not be turned into a label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    /// Short category that tallies group by, e.g. [`NO_CLASS`].
    pub category: String,
    /// The category with specifics, e.g. "several classes named: happy, sad".
    pub detail: String,
}

impl Reason {
    /// A reason of `category` with the given specifics.
    pub fn new(category: &str, detail: impl Into<String>) -> Reason {
        Reason {
            category: category.to_string(),
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

/// What one answer says, as a label.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// Exactly one class, by index in label order.
    Class(usize),
    /// Indices of the labels present (sorted, no repeats); may be empty.
    Set(Vec<usize>),
    /// A number, e.g. an age.
    Number(f64),
    /// A binary answer: `true` for the positive side.
    Bool(bool),
    /// No single reading; such an answer must not become a label.
    Unparseable(Reason),
}

impl Parsed {
    /// Whether the answer gave a label.
    pub fn is_parsed(&self) -> bool {
        !matches!(self, Parsed::Unparseable(_))
    }

    /// Why the answer gave no label, if it did not.
    pub fn reason(&self) -> Option<&Reason> {
        match self {
            Parsed::Unparseable(r) => Some(r),
            _ => None,
        }
    }

    fn fail(category: &str, detail: impl Into<String>) -> Parsed {
        Parsed::Unparseable(Reason::new(category, detail))
    }

    fn plain(category: &str) -> Parsed {
        Parsed::fail(category, category)
    }
}

// ---------------------------------------------------------------------------
// Words

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// A lowercased word.
    Word(String),
    /// A clause or sentence break, normalised to ASCII (`'\n'` for lines).
    Punct(char),
}

const ARTICLES: &[&str] = &["a", "an", "the"];

const NEGATORS: &[&str] = &[
    "not", "no", "never", "without", "nor", "neither", "non", "cannot", "nothing", "lack", "lacks",
    "lacking", "absence", "absent",
];

/// Two-word negators, recognised at their second word.
const NEGATING_PAIRS: &[(&str, &str)] = &[("rather", "than"), ("other", "than"), ("instead", "of")];

/// Words after which a negator is an idiom rather than a negation.
const IDIOM_AFTER_NEGATOR: &[&str] = &["doubt", "doubts", "question", "wonder", "only"];

/// Words that end a negation's look-back, as a clause break does.
const SCOPE_BREAKERS: &[&str] = &[
    "but", "however", "although", "though", "yet", "whereas", "while", "and",
];

/// How many words before a mention a negator may stand.
const NEGATION_WINDOW: usize = 5;

/// The clause or sentence break `c` stands for, if any.
fn break_char(c: char) -> Option<char> {
    match c {
        '.' | '!' | '?' | '\n' | ',' | ';' | ':' | '(' | ')' | '[' | ']' | '{' | '}' | '|' => {
            Some(c)
        }
        '…' | '。' => Some('.'),
        '！' => Some('!'),
        '？' => Some('?'),
        '，' | '—' | '–' => Some(','),
        '；' => Some(';'),
        '：' => Some(':'),
        _ => None,
    }
}

fn is_sentence_end(c: char) -> bool {
    matches!(c, '.' | '!' | '?' | '\n')
}

fn is_apostrophe(c: char) -> bool {
    matches!(c, '\'' | '\u{2019}' | '\u{02BC}')
}

fn tokenize(text: &str) -> Vec<Tok> {
    let mut toks = Vec::new();
    let mut word = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_alphanumeric() {
            word.push(c);
        } else if is_apostrophe(c)
            && !word.is_empty()
            && chars.peek().is_some_and(|n| n.is_alphanumeric())
        {
            // Normalised so the `n't` rule sees one spelling.
            word.push('\'');
        } else {
            flush_word(&mut word, &mut toks);
            if let Some(b) = break_char(c) {
                toks.push(Tok::Punct(b));
            }
        }
    }
    flush_word(&mut word, &mut toks);
    toks
}

fn flush_word(word: &mut String, toks: &mut Vec<Tok>) {
    if word.is_empty() {
        return;
    }
    let lower = word.to_lowercase();
    word.clear();
    let (stem, negated) = match lower.strip_suffix("n't") {
        Some(s) => (s, true),
        None => (lower.as_str(), false),
    };
    for part in stem.split('\'') {
        if !part.is_empty() {
            toks.push(Tok::Word(part.to_string()));
        }
    }
    if negated {
        toks.push(Tok::Word("not".to_string()));
    }
}

fn has_words(toks: &[Tok]) -> bool {
    toks.iter().any(|t| matches!(t, Tok::Word(_)))
}

/// The words of a name, as the text's words will be cut.
fn phrase_words(name: &str) -> Vec<String> {
    tokenize(name)
        .into_iter()
        .filter_map(|t| match t {
            Tok::Word(w) => Some(w),
            Tok::Punct(_) => None,
        })
        .collect()
}

fn word_at(toks: &[Tok], i: usize) -> Option<&str> {
    match toks.get(i) {
        Some(Tok::Word(w)) => Some(w.as_str()),
        _ => None,
    }
}

/// Whether the mention starting at word `start` is negated (module docs).
fn negated(toks: &[Tok], start: usize) -> bool {
    let mut seen = 0;
    let mut i = start.min(toks.len());
    while i > 0 && seen < NEGATION_WINDOW {
        i -= 1;
        let w = match &toks[i] {
            Tok::Punct(_) => return false,
            Tok::Word(w) => w.as_str(),
        };
        if SCOPE_BREAKERS.contains(&w) {
            return false;
        }
        if NEGATORS.contains(&w) {
            let idiom = word_at(toks, i + 1).is_some_and(|n| IDIOM_AFTER_NEGATOR.contains(&n));
            if !idiom {
                return true;
            }
        }
        if i > 0 {
            if let Some(prev) = word_at(toks, i - 1) {
                if NEGATING_PAIRS.iter().any(|(a, b)| *a == prev && *b == w) {
                    return true;
                }
            }
        }
        seen += 1;
    }
    false
}

/// Where `words` matches at `start` (skipping articles between its words),
/// as the index just past the match; `end` bounds the search.
fn match_at(toks: &[Tok], start: usize, end: usize, words: &[String]) -> Option<usize> {
    let end = end.min(toks.len());
    let mut i = start;
    for (k, want) in words.iter().enumerate() {
        if k > 0 {
            while i < end && is_skippable_article(&toks[i], want) {
                i += 1;
            }
        }
        if i >= end {
            return None;
        }
        match &toks[i] {
            Tok::Word(w) if w == want => i += 1,
            _ => return None,
        }
    }
    if i == start {
        None
    } else {
        Some(i)
    }
}

fn is_skippable_article(t: &Tok, want: &str) -> bool {
    matches!(t, Tok::Word(w) if w.as_str() != want && ARTICLES.contains(&w.as_str()))
}

/// Spans (word ranges) of the sentences an explicit answer marker opens.
fn marker_segments(toks: &[Tok], markers: &[&str]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (j, t) in toks.iter().enumerate() {
        let Tok::Word(w) = t else { continue };
        if !markers.contains(&w.as_str()) {
            continue;
        }
        let opens = match toks.get(j + 1) {
            Some(Tok::Punct(':')) => true,
            Some(Tok::Word(v)) => v.as_str() == "is" || v.as_str() == "was",
            _ => false,
        };
        if !opens {
            continue;
        }
        let mut from = j + 2;
        // "Answer:\nhappy" puts the answer on the next line.
        while matches!(toks.get(from), Some(Tok::Punct('\n'))) {
            from += 1;
        }
        let to = (from..toks.len())
            .find(|&k| matches!(&toks[k], Tok::Punct(c) if is_sentence_end(*c)))
            .unwrap_or(toks.len());
        out.push((from, to));
    }
    out
}

/// Items in order of first appearance, each once.
fn distinct<T: PartialEq>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for x in items {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Matching names

#[derive(Debug, Clone)]
struct Phrase {
    words: Vec<String>,
    class: usize,
}

#[derive(Debug, Clone, Copy)]
struct Hit {
    class: usize,
    /// Index into the matcher's phrases.
    phrase: usize,
    end: usize,
    negated: bool,
}

enum AddError {
    NoWords,
    Taken(usize),
}

/// Phrases of several classes, longest first so multi-word names win.
#[derive(Debug, Clone, Default)]
struct Matcher {
    phrases: Vec<Phrase>,
}

impl Matcher {
    fn owner(&self, words: &[String]) -> Option<usize> {
        self.phrases
            .iter()
            .find(|p| p.words.as_slice() == words)
            .map(|p| p.class)
    }

    fn add_words(&mut self, class: usize, words: Vec<String>) -> Result<(), AddError> {
        if words.is_empty() {
            return Err(AddError::NoWords);
        }
        match self.owner(&words) {
            Some(c) if c == class => Ok(()),
            Some(c) => Err(AddError::Taken(c)),
            None => {
                self.phrases.push(Phrase { words, class });
                // Stable, so equally long phrases keep their given order.
                self.phrases
                    .sort_by_key(|p| std::cmp::Reverse(p.words.len()));
                Ok(())
            }
        }
    }

    fn add(&mut self, class: usize, name: &str) -> Result<(), AddError> {
        self.add_words(class, phrase_words(name))
    }

    fn hits(&self, toks: &[Tok], from: usize, to: usize) -> Vec<Hit> {
        let to = to.min(toks.len());
        let mut out = Vec::new();
        let mut i = from;
        while i < to {
            let found = self
                .phrases
                .iter()
                .enumerate()
                .find_map(|(p, ph)| match_at(toks, i, to, &ph.words).map(|end| (p, end)));
            match found {
                Some((p, end)) => {
                    out.push(Hit {
                        class: self.phrases[p].class,
                        phrase: p,
                        end,
                        negated: negated(toks, i),
                    });
                    i = end.max(i + 1);
                }
                None => i += 1,
            }
        }
        out
    }

    fn phrase_text(&self, p: usize) -> String {
        self.phrases
            .get(p)
            .map(|ph| ph.words.join(" "))
            .unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------
// Classes

const HAPPINESS: &[&str] = &["happy", "happiness", "joy", "joyful", "smiling"];
const SADNESS: &[&str] = &["sad", "sadness", "sorrow", "sorrowful"];
const ANGER: &[&str] = &["anger", "angry", "rage", "furious"];
const SURPRISE: &[&str] = &[
    "surprise",
    "surprised",
    "astonished",
    "astonishment",
    "amazed",
];
const FEAR: &[&str] = &["fear", "afraid", "fearful", "scared", "frightened"];
const DISGUST: &[&str] = &["disgust", "disgusted", "repulsed"];
const CONTEMPT: &[&str] = &["contempt", "contemptuous", "disdain", "scorn"];
const NEUTRAL: &[&str] = &["neutral", "calm", "no emotion", "expressionless"];

/// Synonyms for the basic emotion classes, looked up by class name in any
/// usual spelling ("happy", "Happiness", "fearful", ...); empty for other
/// names. The lists include the class name's other forms.
pub fn default_synonyms(class: &str) -> &'static [&'static str] {
    match class.trim().to_lowercase().as_str() {
        "happy" | "happiness" | "joy" => HAPPINESS,
        "sad" | "sadness" => SADNESS,
        "anger" | "angry" => ANGER,
        "surprise" | "surprised" => SURPRISE,
        "fear" | "fearful" | "afraid" => FEAR,
        "disgust" | "disgusted" => DISGUST,
        "contempt" | "contemptuous" => CONTEMPT,
        "neutral" | "neutrality" => NEUTRAL,
        _ => &[],
    }
}

/// Reads which of a fixed list of classes an answer names (module docs).
#[derive(Debug, Clone)]
pub struct ClassParser {
    names: Vec<String>,
    matcher: Matcher,
}

/// Words that open an explicit class answer.
const CLASS_MARKERS: &[&str] = &["answer", "emotion", "expression", "label", "prediction"];

impl ClassParser {
    /// A parser for `names` in label order, each matched by its own name
    /// only. Fails when there are no names, a name has no words, or two
    /// names read the same (e.g. "Happy" and "happy").
    pub fn new<S: AsRef<str>>(names: &[S]) -> Result<ClassParser, String> {
        if names.is_empty() {
            return Err("no class names".to_string());
        }
        let mut p = ClassParser {
            names: names.iter().map(|n| n.as_ref().to_string()).collect(),
            matcher: Matcher::default(),
        };
        for (i, n) in names.iter().enumerate() {
            p.add_synonym(i, n.as_ref())?;
        }
        Ok(p)
    }

    /// A parser whose class `i` is also named by `synonyms[i]` (the list
    /// may be shorter than `names`). Fails as [`ClassParser::new`] does,
    /// or when a synonym would name two classes.
    pub fn with_synonyms<S: AsRef<str>, T: AsRef<str>>(
        names: &[S],
        synonyms: &[Vec<T>],
    ) -> Result<ClassParser, String> {
        if synonyms.len() > names.len() {
            return Err(format!(
                "synonyms for {} classes, but only {} classes",
                synonyms.len(),
                names.len()
            ));
        }
        let mut p = ClassParser::new(names)?;
        for (i, list) in synonyms.iter().enumerate() {
            for s in list {
                p.add_synonym(i, s.as_ref())?;
            }
        }
        Ok(p)
    }

    /// A parser with each class's [`default_synonyms`]. A default synonym
    /// that is another class's name, or a default of two classes, is left
    /// out, since it could not tell them apart.
    pub fn with_default_synonyms<S: AsRef<str>>(names: &[S]) -> Result<ClassParser, String> {
        let mut p = ClassParser::new(names)?;
        let mut claims: BTreeMap<Vec<String>, Vec<usize>> = BTreeMap::new();
        for (i, n) in names.iter().enumerate() {
            for syn in default_synonyms(n.as_ref()) {
                let owners = claims.entry(phrase_words(syn)).or_default();
                if !owners.contains(&i) {
                    owners.push(i);
                }
            }
        }
        for (words, owners) in claims {
            if let [only] = owners.as_slice() {
                let only = *only;
                if p.matcher.owner(&words).is_none_or(|o| o == only) {
                    // Cannot fail: the words are non-empty and unclaimed.
                    let _ = p.matcher.add_words(only, words);
                }
            }
        }
        Ok(p)
    }

    /// Lets `phrase` name class `class` too. Fails for an unknown class, a
    /// phrase without words, or one that already names another class.
    pub fn add_synonym(&mut self, class: usize, phrase: &str) -> Result<(), String> {
        if class >= self.names.len() {
            return Err(format!(
                "class {class} out of range ({} classes)",
                self.names.len()
            ));
        }
        match self.matcher.add(class, phrase) {
            Ok(()) => Ok(()),
            Err(AddError::NoWords) => Err(format!(
                "{phrase:?} (for {}) has no words",
                self.name(class)
            )),
            Err(AddError::Taken(other)) => Err(format!(
                "{phrase:?} would name both {} and {}",
                self.name(other),
                self.name(class)
            )),
        }
    }

    /// The class names in label order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    fn name(&self, i: usize) -> &str {
        self.names.get(i).map(String::as_str).unwrap_or("?")
    }

    fn list(&self, classes: &[usize]) -> String {
        classes
            .iter()
            .map(|&c| self.name(c))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The one class the answer names: [`Parsed::Class`], or
    /// [`Parsed::Unparseable`] with [`EMPTY`], [`NO_CLASS`] or
    /// [`SEVERAL_CLASSES`].
    pub fn parse(&self, text: &str) -> Parsed {
        let toks = tokenize(text);
        if !has_words(&toks) {
            return Parsed::plain(EMPTY);
        }
        for (from, to) in marker_segments(&toks, CLASS_MARKERS).into_iter().rev() {
            let hits = self.matcher.hits(&toks, from, to);
            if hits.iter().any(|h| !h.negated) {
                return self.decide(&hits);
            }
        }
        let hits = self.matcher.hits(&toks, 0, toks.len());
        self.decide(&hits)
    }

    fn decide(&self, hits: &[Hit]) -> Parsed {
        let named = distinct(hits.iter().filter(|h| !h.negated).map(|h| h.class));
        match named.as_slice() {
            [one] => Parsed::Class(*one),
            [] => {
                let negated = distinct(hits.iter().filter(|h| h.negated).map(|h| h.class));
                if negated.is_empty() {
                    Parsed::plain(NO_CLASS)
                } else {
                    Parsed::fail(
                        NO_CLASS,
                        format!("{NO_CLASS} (only negated: {})", self.list(&negated)),
                    )
                }
            }
            many => Parsed::fail(
                SEVERAL_CLASSES,
                format!("{SEVERAL_CLASSES}: {}", self.list(many)),
            ),
        }
    }

    /// Every class the answer asserts, for multi-label answers: a sorted
    /// [`Parsed::Set`], empty when none is asserted; unparseable only for
    /// an empty answer.
    pub fn parse_set(&self, text: &str) -> Parsed {
        let toks = tokenize(text);
        if !has_words(&toks) {
            return Parsed::plain(EMPTY);
        }
        let mut set: Vec<usize> = self
            .matcher
            .hits(&toks, 0, toks.len())
            .iter()
            .filter(|h| !h.negated)
            .map(|h| h.class)
            .collect();
        set.sort_unstable();
        set.dedup();
        Parsed::Set(set)
    }
}

/// Which of the named attributes (e.g. CelebA's "Smiling", "Wearing_Hat";
/// underscores read as spaces) the answer asserts, as a [`Parsed::Set`].
/// For synonyms, build a [`ClassParser`] and call
/// [`ClassParser::parse_set`].
pub fn parse_attributes(text: &str, names: &[&str]) -> Parsed {
    match ClassParser::new(names) {
        Ok(p) => p.parse_set(text),
        Err(e) => Parsed::fail(BAD_SETUP, format!("{BAD_SETUP}: {e}")),
    }
}

// ---------------------------------------------------------------------------
// AUs

/// An AU answer: the scored AUs present and those named outside the set.
#[derive(Debug, Clone, PartialEq)]
pub struct AuAnswer {
    /// [`Parsed::Set`] of indices into the known AUs, or unparseable.
    pub parsed: Parsed,
    /// AU numbers the answer asserts that are not scored (sorted, once).
    pub unknown: Vec<u32>,
}

/// The AU number of a word's tail ("12", "12l", "06c"): digits and at
/// most two letters (side or intensity).
fn au_number(s: &str) -> Option<u32> {
    let cut = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, suffix) = s.split_at(cut);
    if digits.is_empty() || suffix.len() > 2 || !suffix.chars().all(|c| c.is_ascii_alphabetic()) {
        return None;
    }
    digits.parse().ok()
}

/// An AU mention starting at word `i`: its number and the index past it.
fn au_at(toks: &[Tok], i: usize) -> Option<(u32, usize)> {
    let w = word_at(toks, i)?;
    if let Some(rest) = w.strip_prefix("au") {
        if rest.is_empty() {
            let n = au_number(word_at(toks, i + 1)?)?;
            return Some((n, i + 2));
        }
        return au_number(rest).map(|n| (n, i + 1));
    }
    if w == "action" && matches!(word_at(toks, i + 1), Some("unit")) {
        let n = au_number(word_at(toks, i + 2)?)?;
        return Some((n, i + 3));
    }
    None
}

const AU_NOUNS: &[&str] = &["au", "aus", "action", "unit", "units"];

/// "none", or "no" shortly before an AU noun ("no action units").
fn says_no_aus(toks: &[Tok]) -> bool {
    toks.iter().enumerate().any(|(i, t)| match t {
        Tok::Word(w) if w.as_str() == "none" => true,
        Tok::Word(w) if w.as_str() == "no" => toks[i + 1..]
            .iter()
            .take(3)
            .take_while(|t| matches!(t, Tok::Word(_)))
            .any(|t| matches!(t, Tok::Word(v) if AU_NOUNS.contains(&v.as_str()))),
        _ => false,
    })
}

/// The AUs an answer asserts, with the unscored ones it names.
pub fn parse_aus_detailed(text: &str, known: &[u32]) -> AuAnswer {
    let toks = tokenize(text);
    if !has_words(&toks) {
        return AuAnswer {
            parsed: Parsed::plain(EMPTY),
            unknown: Vec::new(),
        };
    }
    let mut mentioned = false;
    let mut found = Vec::new();
    let mut unknown = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        match au_at(&toks, i) {
            Some((n, end)) => {
                mentioned = true;
                if !negated(&toks, i) {
                    match known.iter().position(|&k| k == n) {
                        Some(idx) => found.push(idx),
                        None => unknown.push(n),
                    }
                }
                i = end.max(i + 1);
            }
            None => i += 1,
        }
    }
    found.sort_unstable();
    found.dedup();
    unknown.sort_unstable();
    unknown.dedup();
    let parsed = if mentioned {
        Parsed::Set(found)
    } else if says_no_aus(&toks) {
        Parsed::Set(Vec::new())
    } else {
        Parsed::plain(NO_AU)
    };
    AuAnswer { parsed, unknown }
}

/// The AUs an answer asserts, as a [`Parsed::Set`] of indices into
/// `known` (module docs for the rules).
pub fn parse_aus(text: &str, known: &[u32]) -> Parsed {
    parse_aus_detailed(text, known).parsed
}

// ---------------------------------------------------------------------------
// Numbers

const UNITS: [&str; 20] = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];
const TENS: [&str; 8] = [
    "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
];

fn first_digit_number(text: &str) -> Option<f64> {
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && chars[i].is_ascii_digit() {
            i += 1;
        }
        if start > 0 && chars[start - 1].is_alphanumeric() {
            // Part of a code such as "AU12", not a quantity.
            continue;
        }
        let mut s: String = chars[start..i].iter().collect();
        if i + 1 < chars.len() && chars[i] == '.' && chars[i + 1].is_ascii_digit() {
            s.push('.');
            i += 1;
            while i < chars.len() && chars[i].is_ascii_digit() {
                s.push(chars[i]);
                i += 1;
            }
        }
        // A dash right after a digit or letter is a range or hyphen.
        let negative = start >= 1
            && matches!(chars[start - 1], '-' | '\u{2212}')
            && (start < 2 || !chars[start - 2].is_alphanumeric());
        let x: f64 = match s.parse() {
            Ok(x) => x,
            Err(_) => continue,
        };
        return Some(if negative { -x } else { x });
    }
    None
}

fn first_word_number(toks: &[Tok]) -> Option<u32> {
    for (i, t) in toks.iter().enumerate() {
        let Tok::Word(w) = t else { continue };
        if let Some(k) = TENS.iter().position(|x| *x == w.as_str()) {
            let unit = word_at(toks, i + 1)
                .and_then(|u| UNITS[1..10].iter().position(|x| *x == u))
                .map_or(0, |p| p as u32 + 1);
            return Some(20 + 10 * k as u32 + unit);
        }
        if let Some(k) = UNITS.iter().position(|x| *x == w.as_str()) {
            if k == 1 {
                continue;
            }
            return Some(k as u32);
        }
    }
    None
}

/// The number an answer gives, e.g. an age: [`Parsed::Number`], or
/// unparseable with [`EMPTY`] or [`NO_NUMBER`] (module docs for rules).
pub fn parse_number(text: &str) -> Parsed {
    if text.trim().is_empty() {
        return Parsed::plain(EMPTY);
    }
    if let Some(x) = first_digit_number(text) {
        return if x.is_finite() {
            Parsed::Number(x)
        } else {
            Parsed::fail(NO_NUMBER, format!("{NO_NUMBER} (out of range)"))
        };
    }
    match first_word_number(&tokenize(text)) {
        Some(n) => Parsed::Number(f64::from(n)),
        None => Parsed::plain(NO_NUMBER),
    }
}

// ---------------------------------------------------------------------------
// Binary answers

/// Reads a two-way answer given terms for each side (yes/no, real/fake).
#[derive(Debug, Clone)]
pub struct BinaryParser {
    /// Class 0 is the positive side, class 1 the negative.
    matcher: Matcher,
}

impl BinaryParser {
    /// A parser for the `positive` and `negative` terms. Fails when a side
    /// has no terms, a term has no words, or a term is on both sides.
    pub fn new<P: AsRef<str>, N: AsRef<str>>(
        positive: &[P],
        negative: &[N],
    ) -> Result<BinaryParser, String> {
        if positive.is_empty() || negative.is_empty() {
            return Err("both sides need at least one term".to_string());
        }
        let mut matcher = Matcher::default();
        let sides = positive
            .iter()
            .map(|p| (0, p.as_ref()))
            .chain(negative.iter().map(|n| (1, n.as_ref())));
        for (class, term) in sides {
            match matcher.add(class, term) {
                Ok(()) => {}
                Err(AddError::NoWords) => return Err(format!("{term:?} has no words")),
                Err(AddError::Taken(_)) => return Err(format!("{term:?} is on both sides")),
            }
        }
        Ok(BinaryParser { matcher })
    }

    /// [`Parsed::Bool`] (`true` for the positive side), or unparseable with
    /// [`EMPTY`], [`NEITHER_ANSWER`] or [`BOTH_ANSWERS`].
    pub fn parse(&self, text: &str) -> Parsed {
        let toks = tokenize(text);
        if !has_words(&toks) {
            return Parsed::plain(EMPTY);
        }
        for (from, to) in marker_segments(&toks, &["answer"]).into_iter().rev() {
            if let Some(p) = self.judge(&toks, from, to) {
                return p;
            }
        }
        if let Some(first) = toks.iter().position(|t| matches!(t, Tok::Word(_))) {
            let lead = self.matcher.phrases.iter().find_map(|ph| {
                match_at(&toks, first, toks.len(), &ph.words).map(|end| (ph.class, end))
            });
            if let Some((class, end)) = lead {
                if !matches!(toks.get(end), Some(Tok::Word(_))) {
                    return Parsed::Bool(class == 0);
                }
            }
        }
        self.judge(&toks, 0, toks.len())
            .unwrap_or_else(|| Parsed::plain(NEITHER_ANSWER))
    }

    /// The verdict of a span, `None` when it names neither side.
    fn judge(&self, toks: &[Tok], from: usize, to: usize) -> Option<Parsed> {
        let votes: Vec<(bool, String)> = self
            .matcher
            .hits(toks, from, to)
            .iter()
            .filter(|h| self.counts(toks, h))
            .map(|h| {
                let term = self.matcher.phrase_text(h.phrase);
                let positive = (h.class == 0) != h.negated;
                (
                    positive,
                    if h.negated {
                        format!("not {term}")
                    } else {
                        term
                    },
                )
            })
            .collect();
        let pos = votes.iter().any(|v| v.0);
        let neg = votes.iter().any(|v| !v.0);
        match (pos, neg) {
            (false, false) => None,
            (true, false) => Some(Parsed::Bool(true)),
            (false, true) => Some(Parsed::Bool(false)),
            (true, true) => {
                let terms = distinct(votes.into_iter().map(|v| v.1));
                Some(Parsed::fail(
                    BOTH_ANSWERS,
                    format!("{BOTH_ANSWERS}: {}", terms.join(", ")),
                ))
            }
        }
    }

    /// A term that is itself a negator ("no") answers only where it ends
    /// its clause; before a word it is a determiner ("no doubt").
    fn counts(&self, toks: &[Tok], h: &Hit) -> bool {
        let is_negator = self
            .matcher
            .phrases
            .get(h.phrase)
            .is_some_and(|ph| ph.words.len() == 1 && NEGATORS.contains(&ph.words[0].as_str()));
        !is_negator || !matches!(toks.get(h.end), Some(Tok::Word(_)))
    }
}

/// A two-way answer with the given terms (module docs for the rules);
/// unusable term lists give [`BAD_SETUP`].
pub fn parse_binary(text: &str, positive: &[&str], negative: &[&str]) -> Parsed {
    match BinaryParser::new(positive, negative) {
        Ok(p) => p.parse(text),
        Err(e) => Parsed::fail(BAD_SETUP, format!("{BAD_SETUP}: {e}")),
    }
}

/// A yes/no answer with [`YES_WORDS`] and [`NO_WORDS`].
pub fn parse_yes_no(text: &str) -> Parsed {
    parse_binary(text, YES_WORDS, NO_WORDS)
}

/// A real-or-fake answer (deepfake detection): `Bool(true)` for fake,
/// with [`FAKE_WORDS`] and [`REAL_WORDS`] under the same rules as yes/no
/// (negation flips a term: "no signs of manipulation" reads as real).
pub fn parse_real_fake(text: &str) -> Parsed {
    parse_binary(text, FAKE_WORDS, REAL_WORDS)
}

// ---------------------------------------------------------------------------
// Tally

const EXCERPT_CHARS: usize = 80;

fn excerpt(answer: &str) -> String {
    let flat = answer.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= EXCERPT_CHARS {
        flat
    } else {
        let mut s: String = flat.chars().take(EXCERPT_CHARS - 1).collect();
        s.push('…');
        s
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Counts of parsed and unparseable answers, so a metric can say how its
/// labels were obtained.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParseTally {
    /// Answers that gave a label.
    pub parsed: usize,
    /// Answers that did not.
    pub unparseable: usize,
    /// Unparseable answers by [`Reason::category`].
    pub reasons: BTreeMap<String, usize>,
    /// The first few unparseable answers (shortened) with their detail.
    pub examples: Vec<(String, String)>,
    /// Unscored AU numbers, by how many answers named them.
    pub unknown_aus: BTreeMap<u32, usize>,
}

impl ParseTally {
    /// How many unparseable answers [`ParseTally::examples`] keeps.
    pub const MAX_EXAMPLES: usize = 5;

    /// An empty tally.
    pub fn new() -> ParseTally {
        ParseTally::default()
    }

    /// All answers counted.
    pub fn total(&self) -> usize {
        self.parsed + self.unparseable
    }

    /// Counts one answer and what it parsed to.
    pub fn add(&mut self, answer: &str, parsed: &Parsed) {
        match parsed.reason() {
            None => self.parsed += 1,
            Some(r) => {
                self.unparseable += 1;
                *self.reasons.entry(r.category.clone()).or_insert(0) += 1;
                if self.examples.len() < Self::MAX_EXAMPLES {
                    self.examples.push((excerpt(answer), r.detail.clone()));
                }
            }
        }
    }

    /// Counts one AU answer, with the unscored AUs it named.
    pub fn add_aus(&mut self, answer: &str, aus: &AuAnswer) {
        self.add(answer, &aus.parsed);
        for &au in &aus.unknown {
            *self.unknown_aus.entry(au).or_insert(0) += 1;
        }
    }

    /// Adds another tally's counts (e.g. another fold's).
    pub fn merge(&mut self, other: &ParseTally) {
        self.parsed += other.parsed;
        self.unparseable += other.unparseable;
        for (r, n) in &other.reasons {
            *self.reasons.entry(r.clone()).or_insert(0) += n;
        }
        for (au, n) in &other.unknown_aus {
            *self.unknown_aus.entry(*au).or_insert(0) += n;
        }
        let room = Self::MAX_EXAMPLES.saturating_sub(self.examples.len());
        self.examples
            .extend(other.examples.iter().take(room).cloned());
    }

    /// One line for a metric's description, unparseable answers "counted
    /// as wrong".
    pub fn describe(&self) -> String {
        self.describe_with("counted as wrong")
    }

    /// One line for a metric's description, saying with `fate` what the
    /// metric did with unparseable answers (e.g. "left out of the mean").
    pub fn describe_with(&self, fate: &str) -> String {
        if self.total() == 0 {
            return "no answers".to_string();
        }
        let mut s = format!("{} parsed", plural(self.parsed, "answer", "answers"));
        if self.unparseable == 0 {
            s.push_str(", none unparseable");
        } else {
            let mut rs: Vec<(&String, &usize)> = self.reasons.iter().collect();
            // Commonest first: that is what a reader needs to see.
            rs.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
            let list = rs
                .iter()
                .map(|(r, n)| format!("{n} {r}"))
                .collect::<Vec<_>>()
                .join(", ");
            s.push_str(&format!(
                ", {} unparseable ({list}), {fate}",
                self.unparseable
            ));
        }
        if !self.unknown_aus.is_empty() {
            let aus = self
                .unknown_aus
                .iter()
                .map(|(au, n)| format!("AU{au} ({n})"))
                .collect::<Vec<_>>()
                .join(", ");
            s.push_str(&format!("; AUs outside the scored set ignored: {aus}"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASIC: [&str; 7] = [
        "anger",
        "disgust",
        "fear",
        "happiness",
        "sadness",
        "surprise",
        "neutral",
    ];

    fn basic() -> ClassParser {
        ClassParser::with_default_synonyms(&BASIC).expect("basic classes")
    }

    fn why(p: &Parsed) -> &str {
        p.reason().map(|r| r.category.as_str()).unwrap_or("")
    }

    fn detail(p: &Parsed) -> String {
        p.reason().map(|r| r.detail.clone()).unwrap_or_default()
    }

    fn words(text: &str) -> Vec<String> {
        phrase_words(text)
    }

    #[test]
    fn tokens_split_contractions_and_apostrophes() {
        assert_eq!(words("Isn't HAPPY"), ["is", "not", "happy"]);
        assert_eq!(words("5 o’clock shadow"), ["5", "o", "clock", "shadow"]);
        assert_eq!(words("Wearing_Hat"), ["wearing", "hat"]);
        assert_eq!(words("thirty-four"), ["thirty", "four"]);
        assert!(words("' n't ’ ...").iter().all(|w| !w.is_empty()));
    }

    #[test]
    fn class_single_name() {
        assert_eq!(basic().parse("The person looks happy."), Parsed::Class(3));
    }

    #[test]
    fn class_is_case_insensitive() {
        assert_eq!(basic().parse("SURPRISE!!"), Parsed::Class(5));
        assert_eq!(basic().parse("Disgust"), Parsed::Class(1));
    }

    #[test]
    fn class_synonyms() {
        let p = basic();
        assert_eq!(p.parse("pure joy"), Parsed::Class(3));
        assert_eq!(p.parse("she seems scared"), Parsed::Class(2));
        assert_eq!(p.parse("He is furious"), Parsed::Class(0));
        assert_eq!(p.parse("calm"), Parsed::Class(6));
    }

    #[test]
    fn class_named_repeatedly_is_one_class() {
        let p = basic();
        assert_eq!(
            p.parse("Happy. The smile shows happiness; a happy face."),
            Parsed::Class(3)
        );
    }

    #[test]
    fn class_none_named() {
        let p = basic();
        let r = p.parse("I cannot tell from this image.");
        assert_eq!(why(&r), NO_CLASS);
        assert_eq!(detail(&r), NO_CLASS);
        assert_eq!(why(&p.parse("   \n ")), EMPTY);
    }

    #[test]
    fn class_ambiguous_lists_both() {
        let r = basic().parse("Could be happy or sad.");
        assert_eq!(why(&r), SEVERAL_CLASSES);
        assert_eq!(detail(&r), "several classes named: happiness, sadness");
    }

    #[test]
    fn class_word_boundaries() {
        let p = basic();
        assert_eq!(why(&p.parse("fearless and unhappy")), NO_CLASS);
        assert_eq!(why(&p.parse("angrily")), NO_CLASS);
        // A derived form counts once listed as a synonym.
        assert_eq!(p.parse("deep sadness"), Parsed::Class(4));
    }

    #[test]
    fn sadness_needs_synonym_for_sad_class() {
        let bare = ClassParser::new(&["sad", "happy"]).expect("names");
        assert_eq!(why(&bare.parse("deep sadness")), NO_CLASS);
        assert_eq!(bare.parse("sad"), Parsed::Class(0));
        let rich = ClassParser::with_default_synonyms(&["sad", "happy"]).expect("names");
        assert_eq!(rich.parse("deep sadness"), Parsed::Class(0));
        assert_eq!(rich.parse("HAPPINESS"), Parsed::Class(1));
    }

    #[test]
    fn negation_drops_mentions() {
        let p = basic();
        assert_eq!(p.parse("Not happy, but sad."), Parsed::Class(4));
        assert_eq!(
            p.parse("There is no sign of happiness and the face is neutral"),
            Parsed::Class(6)
        );
        assert_eq!(
            p.parse("The person isn't angry; they look surprised."),
            Parsed::Class(5)
        );
        assert_eq!(p.parse("I don't see any anger. Fear."), Parsed::Class(2));
        assert_eq!(
            p.parse("This is sadness rather than anger."),
            Parsed::Class(4)
        );
    }

    #[test]
    fn negation_only_is_no_class() {
        let r = basic().parse("Neither happy nor sad.");
        assert_eq!(why(&r), NO_CLASS);
        assert_eq!(
            detail(&r),
            "no class name (only negated: happiness, sadness)"
        );
    }

    #[test]
    fn negation_scope_ends() {
        let p = basic();
        assert_eq!(p.parse("not angry and clearly happy"), Parsed::Class(3));
        // Five words back at most.
        assert_eq!(
            p.parse("No doubt in my mind the person is happy"),
            Parsed::Class(3)
        );
        assert_eq!(
            p.parse("There is no doubt the person is happy"),
            Parsed::Class(3)
        );
        assert_eq!(
            p.parse("I do not think the person is happy, maybe afraid"),
            Parsed::Class(2)
        );
    }

    #[test]
    fn longest_name_wins() {
        let p = ClassParser::new(&["surprised", "happily surprised"]).expect("names");
        assert_eq!(p.parse("Happily surprised."), Parsed::Class(1));
        assert_eq!(p.parse("surprised"), Parsed::Class(0));
        assert_eq!(basic().parse("There is no emotion"), Parsed::Class(6));
    }

    #[test]
    fn explicit_answer_sentence_wins() {
        let p = basic();
        assert_eq!(
            p.parse("The brows are raised as in surprise. Answer: fear."),
            Parsed::Class(2)
        );
        assert_eq!(
            p.parse("**Answer:** Happiness\nReasoning: not sad, maybe a bit angry"),
            Parsed::Class(3)
        );
        assert_eq!(
            p.parse("The emotion is happiness. Final answer: surprise"),
            Parsed::Class(5)
        );
        // A marker sentence naming nothing falls back to the whole text.
        assert_eq!(p.parse("No emotion is visible."), Parsed::Class(6));
        assert_eq!(why(&p.parse("The emotion is not happiness.")), NO_CLASS);
        assert_eq!(
            why(&p.parse("The expression is a mix of happiness and surprise.")),
            SEVERAL_CLASSES
        );
    }

    #[test]
    fn class_parser_setup_errors() {
        let none: [&str; 0] = [];
        assert!(ClassParser::new(&none).is_err());
        assert!(ClassParser::new(&["happy", "Happy"]).is_err());
        assert!(ClassParser::new(&["happy", "!!"]).is_err());
        let mut p = ClassParser::new(&["happy", "sad"]).expect("names");
        assert!(p.add_synonym(1, "happy").is_err());
        assert!(p.add_synonym(5, "glad").is_err());
        assert!(p.add_synonym(0, "glad").is_ok());
        assert_eq!(p.parse("glad"), Parsed::Class(0));
        let syn = ClassParser::with_synonyms(&["pos", "neg"], &[vec!["good"], vec!["bad"]])
            .expect("synonyms");
        assert_eq!(syn.parse("rather bad"), Parsed::Class(1));
        assert!(ClassParser::with_synonyms(&["pos"], &[vec!["good"], vec!["bad"]]).is_err());
    }

    #[test]
    fn clashing_default_synonyms_are_left_out() {
        // "joy" takes the happiness list, which also holds "happy".
        let p = ClassParser::with_default_synonyms(&["happy", "joy"]).expect("names");
        assert_eq!(p.parse("happy"), Parsed::Class(0));
        assert_eq!(p.parse("joy"), Parsed::Class(1));
        assert_eq!(why(&p.parse("joyful")), NO_CLASS);
    }

    #[test]
    fn default_synonym_lookup() {
        assert_eq!(default_synonyms("Happiness"), default_synonyms("happy"));
        assert!(default_synonyms("fear").contains(&"scared"));
        assert!(default_synonyms("neutral").contains(&"no emotion"));
        assert!(default_synonyms("happily surprised").is_empty());
    }

    #[test]
    fn any_utf8_is_safe() {
        let p = basic();
        assert_eq!(p.parse("Émotion : 😀 happy — très"), Parsed::Class(3));
        for s in [
            "’", "'", "n't", "\u{0301}", "İİ", "。。", "AU", "-", "1.", "au\u{0}",
        ] {
            let _ = p.parse(s);
            let _ = p.parse_set(s);
            let _ = parse_aus(s, &[1]);
            let _ = parse_number(s);
            let _ = parse_yes_no(s);
        }
    }

    #[test]
    fn class_set_for_multi_label() {
        let p = basic();
        assert_eq!(
            p.parse_set("happy and surprised, not afraid"),
            Parsed::Set(vec![3, 5])
        );
        assert_eq!(p.parse_set("nothing of note"), Parsed::Set(vec![]));
    }

    #[test]
    fn aus_variants() {
        let known = [1, 2, 4, 6, 12];
        assert_eq!(
            parse_aus("AU1, AU 2, au4 and AU12(L)", &known),
            Parsed::Set(vec![0, 1, 2, 4])
        );
        assert_eq!(parse_aus("AU1+AU2", &known), Parsed::Set(vec![0, 1]));
        assert_eq!(
            parse_aus("AU06B and AU12C; action unit 4", &known),
            Parsed::Set(vec![2, 3, 4])
        );
        assert_eq!(parse_aus("AU12 AU12 au 12", &known), Parsed::Set(vec![4]));
    }

    #[test]
    fn aus_outside_the_set_are_reported() {
        let a = parse_aus_detailed("AU6 and AU9, also AU25", &[6, 12]);
        assert_eq!(a.parsed, Parsed::Set(vec![0]));
        assert_eq!(a.unknown, vec![9, 25]);
        let only = parse_aus_detailed("AU9", &[6, 12]);
        assert_eq!(only.parsed, Parsed::Set(vec![]));
        assert_eq!(only.unknown, vec![9]);
    }

    #[test]
    fn aus_none_and_missing() {
        let known = [1, 2];
        assert_eq!(
            parse_aus("No action units are active.", &known),
            Parsed::Set(vec![])
        );
        assert_eq!(parse_aus("None", &known), Parsed::Set(vec![]));
        assert_eq!(parse_aus("no AUs", &known), Parsed::Set(vec![]));
        assert_eq!(why(&parse_aus("The face is relaxed.", &known)), NO_AU);
        assert_eq!(why(&parse_aus("beau12 auto 3", &known)), NO_AU);
        assert_eq!(why(&parse_aus("", &known)), EMPTY);
    }

    #[test]
    fn aus_negated() {
        let known = [4, 12];
        assert_eq!(
            parse_aus("AU12 is present but not AU4", &known),
            Parsed::Set(vec![1])
        );
        assert_eq!(parse_aus("No AU4.", &known), Parsed::Set(vec![]));
    }

    #[test]
    fn numbers_in_digits() {
        assert_eq!(parse_number("about 34 years old"), Parsed::Number(34.0));
        assert_eq!(parse_number("Age: 34.5"), Parsed::Number(34.5));
        assert_eq!(parse_number("a 34-year-old man"), Parsed::Number(34.0));
        assert_eq!(parse_number("30-35"), Parsed::Number(30.0));
        assert_eq!(parse_number("(-3)"), Parsed::Number(-3.0));
        assert_eq!(parse_number("AU12 active, age 40"), Parsed::Number(40.0));
        assert_eq!(parse_number("in her mid-30s"), Parsed::Number(30.0));
        assert_eq!(parse_number("1,000"), Parsed::Number(1.0));
    }

    #[test]
    fn numbers_in_words() {
        assert_eq!(parse_number("thirty-four"), Parsed::Number(34.0));
        assert_eq!(parse_number("Twenty one years"), Parsed::Number(21.0));
        assert_eq!(parse_number("around twenty"), Parsed::Number(20.0));
        assert_eq!(parse_number("seven"), Parsed::Number(7.0));
        assert_eq!(parse_number("this one is nineteen"), Parsed::Number(19.0));
        // Digits win over words anywhere.
        assert_eq!(
            parse_number("twenty-something, say 27"),
            Parsed::Number(27.0)
        );
        assert_eq!(why(&parse_number("this one")), NO_NUMBER);
    }

    #[test]
    fn numbers_missing() {
        assert_eq!(why(&parse_number("no idea")), NO_NUMBER);
        assert_eq!(why(&parse_number("")), EMPTY);
        let huge = "9".repeat(400);
        assert_eq!(why(&parse_number(&huge)), NO_NUMBER);
    }

    #[test]
    fn yes_no_happy_path() {
        assert_eq!(parse_yes_no("Yes."), Parsed::Bool(true));
        assert_eq!(parse_yes_no("no"), Parsed::Bool(false));
        assert_eq!(
            parse_yes_no("YES, the person is smiling"),
            Parsed::Bool(true)
        );
        assert_eq!(parse_yes_no("Yes, there is no doubt."), Parsed::Bool(true));
        assert_eq!(parse_yes_no("There is no doubt, yes"), Parsed::Bool(true));
        assert_eq!(parse_yes_no("That is not correct"), Parsed::Bool(false));
        assert_eq!(parse_yes_no("Answer: No."), Parsed::Bool(false));
    }

    #[test]
    fn yes_no_conflicts_and_gaps() {
        assert_eq!(why(&parse_yes_no("Yes and no")), BOTH_ANSWERS);
        let r = parse_yes_no("It could be true, or it could be false");
        assert_eq!(detail(&r), "both answers named: true, false");
        assert_eq!(why(&parse_yes_no("Maybe.")), NEITHER_ANSWER);
        // "no" before a word is a determiner, not an answer.
        assert_eq!(why(&parse_yes_no("There is no smile")), NEITHER_ANSWER);
        assert_eq!(why(&parse_yes_no("")), EMPTY);
    }

    #[test]
    fn binary_custom_terms() {
        let pos = ["real", "genuine"];
        let neg = ["fake", "posed"];
        assert_eq!(
            parse_binary("This smile looks genuine.", &pos, &neg),
            Parsed::Bool(true)
        );
        assert_eq!(parse_binary("Fake.", &pos, &neg), Parsed::Bool(false));
        assert_eq!(
            parse_binary("It is not fake", &pos, &neg),
            Parsed::Bool(true)
        );
        assert_eq!(
            parse_binary("Not real; it is posed", &pos, &neg),
            Parsed::Bool(false)
        );
        assert_eq!(
            why(&parse_binary("real or fake, hard to say", &pos, &neg)),
            BOTH_ANSWERS
        );
        assert_eq!(why(&parse_binary("yes", &[], &["no"])), BAD_SETUP);
        assert!(BinaryParser::new(&["same"], &["Same"]).is_err());
    }

    #[test]
    fn attributes_with_underscores_and_negation() {
        let names = ["Smiling", "Eyeglasses", "Wearing_Hat"];
        assert_eq!(
            parse_attributes(
                "The woman is smiling and wearing a hat, no eyeglasses.",
                &names
            ),
            Parsed::Set(vec![0, 2])
        );
        assert_eq!(parse_attributes("SMILING", &names), Parsed::Set(vec![0]));
        assert_eq!(
            parse_attributes("A plain face.", &names),
            Parsed::Set(vec![])
        );
        assert_eq!(why(&parse_attributes("", &names)), EMPTY);
        assert_eq!(
            why(&parse_attributes("x", &["Smiling", "smiling"])),
            BAD_SETUP
        );
    }

    #[test]
    fn attributes_celeba_oddities() {
        let names = ["5_o_Clock_Shadow", "No_Beard", "Male"];
        assert_eq!(
            parse_attributes("A female face with a 5 o'clock shadow and no beard", &names),
            Parsed::Set(vec![0, 1])
        );
        assert_eq!(
            parse_attributes("A bearded male", &names),
            Parsed::Set(vec![2])
        );
    }

    #[test]
    fn tally_describes_counts_and_reasons() {
        let p = basic();
        let mut t = ParseTally::new();
        for a in ["happy", "sad", "dunno", "no idea", "happy or sad"] {
            t.add(a, &p.parse(a));
        }
        assert_eq!(t.total(), 5);
        assert_eq!(
            t.describe(),
            "2 answers parsed, 3 unparseable (2 no class name, 1 several classes named), \
             counted as wrong"
        );
        assert_eq!(t.examples.len(), 3);
        assert_eq!(t.examples[2].1, "several classes named: happiness, sadness");
    }

    #[test]
    fn tally_edge_lines() {
        let mut t = ParseTally::new();
        assert_eq!(t.describe(), "no answers");
        t.add("34", &parse_number("34"));
        assert_eq!(t.describe(), "1 answer parsed, none unparseable");
        t.add("?", &parse_number("?"));
        assert_eq!(
            t.describe_with("left out of the mean"),
            "1 answer parsed, 1 unparseable (1 no number), left out of the mean"
        );
    }

    #[test]
    fn tally_aus_merge_and_examples_cap() {
        let mut a = ParseTally::new();
        a.add_aus("AU6 AU9", &parse_aus_detailed("AU6 AU9", &[6]));
        let mut b = ParseTally::new();
        b.add_aus("AU9", &parse_aus_detailed("AU9", &[6]));
        for _ in 0..10 {
            b.add("", &parse_aus("", &[6]));
        }
        assert_eq!(b.examples.len(), ParseTally::MAX_EXAMPLES);
        a.merge(&b);
        assert_eq!(a.parsed, 2);
        assert_eq!(a.unparseable, 10);
        assert_eq!(a.unknown_aus.get(&9), Some(&2));
        assert_eq!(a.examples.len(), ParseTally::MAX_EXAMPLES);
        assert_eq!(
            a.describe(),
            "2 answers parsed, 10 unparseable (10 empty answer), counted as wrong; \
             AUs outside the scored set ignored: AU9 (2)"
        );
    }

    #[test]
    fn excerpts_are_char_safe() {
        let long = "é😀 ".repeat(200);
        let mut t = ParseTally::new();
        t.add(&long, &basic().parse(&long));
        let (text, why) = &t.examples[0];
        assert_eq!(text.chars().count(), EXCERPT_CHARS);
        assert!(text.ends_with('…'));
        assert_eq!(why, NO_CLASS);
        // Emoji are not words, so an emoji-only answer is empty.
        assert_eq!(super::tests::why(&basic().parse("😀 😀")), EMPTY);
    }
}
