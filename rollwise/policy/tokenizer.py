"""The tiny model's codec as a `transformers` tokenizer, so that an exported tiny model needs no rollwise.

    from transformers import pipeline
    pipe = pipeline("text-generation", model="runs/default/model")
    pipe("Calculate 47 + 45.", return_full_text=False)[0]["generated_text"]    # '92' once trained

The tiny model reads a fixed layout (`rollwise.policy.tiny`): every number zero-padded and written least-
significant digit first, `<pad>` symbols filling unused room, `=` at the end; it answers in the same
reversed layout (`120` for 21). A plain character vocabulary cannot do that, so the layout lives in the
`tokenizers` pipeline itself, as rules that serialise into `tokenizer.json` (no custom code to load):

- the normalizer keeps the digits and operators of any text (`Calculate 47 + 45.` -> `47+45`), pads
  each number to its width, reverses its digits, adds the `<pad>` symbols and the final `=`:
  the ids are exactly `codec.prompt_ids(item)` (tests/policy/test_tokenizer.py checks every pool item);
- the decoder turns every field of the answer's width back (`120` -> `21`, `740,290,191` -> `47,92,191`).

How a field of width w is reversed with literal replacements only: w slot letters are inserted before
it, slot q is filled with a mark letter standing for digit w-1-q (a look-ahead of fixed distance
reads it: one rule per slot and digit), the original digits are removed and the marks become digits
again. 10 w + 14 rules instead of one rule per possible number.
"""

from __future__ import annotations

from rollwise.policy.tiny import EOS, PAD, VOCAB

SLOTS = "abcdefghijklmnopqrstuvwxyz"  # input letters are removed first, so these never clash
MARKS = "ABCDEFGHIJ"  # mark of digit d: MARKS[d]
CHAT_TEMPLATE = ("{{ (messages | selectattr('role', 'equalto', 'user') | list | last)['content'] }}")


def _replace(pattern: str, content: str):
    from tokenizers import Regex, normalizers

    return normalizers.Replace(Regex(pattern), content)


def _decode_replace(pattern: str, content: str):
    from tokenizers import Regex, decoders

    return decoders.Replace(Regex(pattern), content)


def reverse_fields(width: int, rule) -> list:
    """Rules that reverse every run of exactly `width` digits (`rule` builds a normalizer or decoder step)."""
    if not 1 <= width <= len(SLOTS):
        raise ValueError(f"fields of {width} digits: the tokenizer reverses 1-{len(SLOTS)} digits")
    field = rf"(?<![0-9])(?=[0-9]{{{width}}}(?![0-9]))"
    steps = [rule(field, SLOTS[:width])]
    for q in range(width):
        for d in range(10):  # slot q takes digit width-1-q: 2 (width-1-q) characters further on
            steps.append(rule(rf"{SLOTS[q]}(?=.{{{2 * (width - 1 - q)}}}{d})", MARKS[d]))
    steps.append(rule(rf"(?<=[{MARKS[0]}-{MARKS[-1]}]{{{width}}})[0-9]{{{width}}}", ""))
    return steps


def _marks_to_digits(rule) -> list:
    return [rule(MARKS[d], str(d)) for d in range(10)]


def prompt_normalizer(codec):
    """Any text with a sum -> the codec's prompt layout, as text (`<pad>` for the pad symbol)."""
    from tokenizers import normalizers

    if codec.name == "scratchpad":
        width, operators = codec.layout.width, "+"
    else:
        width, operators = codec.layout.number_width, "+*-"
    ops = "".join("\\" + c if c == "-" else c for c in operators)
    steps = [_replace(rf"[^0-9{ops}]", "")]
    for k in range(1, width):  # zero-pad every number to the layout's width
        steps.append(_replace(rf"(?<![0-9])(?=[0-9]{{{k}}}(?![0-9]))", "0" * (width - k)))
    if codec.name == "scratchpad" or codec.layout.reverse_numbers:
        steps += reverse_fields(width, _replace) + _marks_to_digits(_replace)
    steps += _scratchpad_padding(codec) if codec.name == "scratchpad" else _answer_padding(codec, ops)
    steps.append(_replace("$", "="))
    return normalizers.Sequence(steps)


def _answer_padding(codec, ops: str) -> list:
    """TinyCodec: `<pad>` on the left up to the prompt width, so that `=` always sits at one position."""
    width, total = codec.layout.number_width, codec.layout.prompt_width + 1
    steps = []
    for terms in range(1, total // (width + 1) + 1):
        pads = total - terms * (width + 1)
        if pads > 0:
            shape = rf"^(?=[0-9]{{{width}}}(?:[{ops}][0-9]{{{width}}}){{{terms - 1}}}$)"
            steps.append(_replace(shape, VOCAB[PAD] * pads))
    return steps


def _scratchpad_padding(codec) -> list:
    """ScratchpadCodec: every term ends with `+`, then `<pad>` fills the unused term slots."""
    width, slots = codec.layout.width, codec.layout.slots
    steps = [_replace("$", "+")]
    for terms in range(1, slots):
        steps.append(_replace(rf"(?<=^(?:[0-9]{{{width}}}\+){{{terms}}})$", VOCAB[PAD] * ((slots - terms) * (width + 1))))
    return steps


def answer_decoder(codec):
    """Completion ids -> readable text: each field of the answer's width read back, sign in front."""
    from tokenizers import decoders

    width = codec.layout.width if codec.name == "scratchpad" else codec.layout.answer_width
    marks = f"[{MARKS[0]}-{MARKS[-1]}]"
    steps = [decoders.Fuse(), *reverse_fields(width, _decode_replace),
             _decode_replace(rf"(?<!{marks}){MARKS[0]}+(?={marks})", ""),  # leading zeros of the fixed width
             _decode_replace(rf"(?<!{marks})(?={marks}+-)", "-"),  # TinyCodec writes the sign last: `120-` is -21
             _decode_replace(rf"(?<={marks})-", ""),
             *_marks_to_digits(_decode_replace)]
    return decoders.Sequence(steps)


def build_tokenizer(codec):
    """A `PreTrainedTokenizerFast` whose ids for a prompt text are `codec.prompt_ids` of that sum and whose
    decoding of a completion is the readable answer; a chat template passes the last user message on."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {symbol: i for i, symbol in enumerate(VOCAB)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=VOCAB[PAD]))
    tok.normalizer = prompt_normalizer(codec)
    specials = "|".join(VOCAB[i] for i in (PAD, EOS))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(rf"{specials}|."), behavior="isolated")
    tok.decoder = answer_decoder(codec)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=VOCAB[PAD], eos_token=VOCAB[EOS],
                                   padding_side="left", chat_template=CHAT_TEMPLATE,
                                   model_max_length=codec.max_positions)


def save_tokenizer(codec, directory) -> None:
    """Write the tokenizer files (tokenizer.json, tokenizer_config.json, chat template) into directory."""
    build_tokenizer(codec).save_pretrained(directory)
