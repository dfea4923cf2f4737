"""Deterministic generators of varied text for tokenizer tests and of small labelled tasks.

Strings mix scripts, accents, CJK, emoji (including ZWJ sequences and ones newer than older
Unicode tables), control and format characters, whitespace runs, punctuation, numbers in several
scripts, very long words and special-token look-alikes.
"""
import random

WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "HELLO", "World", "naïve",
         "café", "résumé", "Straße", "don't", "it's", "we're", "they'll", "I'm", "you'd", "O'Neil",
         "e-mail", "state-of-the-art", "U.S.A.", "x86_64", "camelCase", "snake_case", "tokenizer",
         "unaffable", "running", "played", "hyper-parameter", "BitFit", "bias", "transformer"]
SCRIPTS = ["àáâãäåæçèéêëìíîïñòóôõöøùúûüýÿĀāĂăĄąĆćŒœŠšŸŽžßÅ", "αβγδεζηθικλμνξοπρστυφχψωΑΒΓΔΣΩάέή",
           "абвгдежзийклмнопрстуфхцчшщъыьэюяАБВГДЖЁё", "中文字符测试漢字日本語東京大学", "ひらがなカタカナテスト",
           "한국어텍스트입니다", "مرحبا بالعالم", "नमस्ते दुनिया", "สวัสดีชาวโลก", "שלום עולם"]
EMOJI = ["😀", "🥰", "👍🏽", "👨‍👩‍👧", "🏳️‍🌈", "🤖", "🫠", "✨", "❤️", "🇫🇷", "🧑🏿‍💻"]
CONTROLS = ["\x00", "\x01", "\x07", "\x1b", "\x7f", "\u200b", "\u200d", "\ufeff", "\u00ad", "\ufffd",
            "\U000e0001", "\u0085", "\u2028", "\ue000"]
SPACES = [" ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2003", "   \t \n ", "\u200a", "\x0b", "\x0c"]
PUNCT = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") + ["«", "»", "—", "–", "¿", "¡", "…", "“", "”", "‘",
                                                     "’", "·", "§", "¶", "©", "®", "™", "°", "±", "€",
                                                     "£", "¥", "•", "†", "‰", "※"]
NUMBERS = ["123", "3.14", "1,000", "٣٤٥", "²", "½", "⅓", "Ⅻ", "০১২", "42nd", "2026-11-22", "0x1F"]
SPECIALS = ["[SEP]", "[CLS]", "[MASK]", "<mask>", "<s>", "</s>", "[UNK]", "<pad>", " <mask> ", "[PAD]"]
CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'"]
COMBINING = ["e\u0301", "a\u0308", "n\u0303", "o\u0302\u0323", "\u0301", "\u0327c"]


def piece(rng):
    kind = rng.random()
    if kind < 0.35:
        return rng.choice(WORDS)
    if kind < 0.50:
        s = rng.choice(SCRIPTS)
        start = rng.randrange(len(s))
        return s[start:start + rng.randint(1, 8)]
    if kind < 0.56:
        return rng.choice(EMOJI)
    if kind < 0.61:
        return rng.choice(CONTROLS)
    if kind < 0.70:
        return rng.choice(SPACES)
    if kind < 0.80:
        return "".join(rng.choice(PUNCT) for _ in range(rng.randint(1, 3)))
    if kind < 0.86:
        return rng.choice(NUMBERS)
    if kind < 0.89:
        return "".join(rng.choice("abcdefghijklmnopqrstuvwxyzé") for _ in range(rng.randint(90, 130)))
    if kind < 0.92:
        return rng.choice(SPECIALS)
    if kind < 0.96:
        return rng.choice(CONTRACTIONS)
    return rng.choice(COMBINING)


def varied_string(rng, max_pieces=25):
    parts = []
    for _ in range(rng.randint(0, max_pieces)):
        parts.append(piece(rng))
        parts.append(rng.choice(["", " ", " ", " ", "  "]))
    return "".join(parts)


def varied_strings(n, seed):
    rng = random.Random(seed)
    return [varied_string(rng) for _ in range(n)]


def word_list(rng):
    return [w for w in varied_string(rng, 12).split(" ") if w.strip()] or ["word"]
