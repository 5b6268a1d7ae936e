"""Coverage-guided fuzzing of the RFProtocol frame decoder (atheris/libFuzzer).

Any input must end in messages or a ProtocolError; anything else (another
exception, a crash, a hang) is a bug. Run by tests/fuzz/test_fuzz.py over the
corpus in tests/unit/rflib/corpus/, or by hand:
    .venv/bin/python tests/fuzz/fuzz_codec.py -runs=1000000 tests/unit/rflib/corpus/
"""

import sys

import atheris

with atheris.instrument_imports():
    from routeflow.rflib import codec


def one_input(data: bytes) -> None:
    decoder = codec.FrameDecoder(max_frame=1 << 16)
    try:
        # Feed in two pieces too: the split must not change the outcome.
        cut = data[0] % (len(data) + 1) if data else 0
        decoder.feed(data[:cut])
        decoder.feed(data[cut:])
    except codec.ProtocolError:
        pass


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
