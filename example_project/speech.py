"""Text to speech with eSpeak NG, from the library and voice data ``espeakng-loader`` bundles.

:func:`synthesize` speaks a text and returns 16 kHz mono int16 samples. eSpeak NG keeps state
between utterances inside one process (the same text comes out a few samples longer or
shorter the second time), so each utterance is spoken by a fresh Python process running this
module: the same text then always gives the same samples, on every machine with the same
wheel.

Run as a script, ``python example_project/speech.py TEXT`` (by path, so that it works from any
working directory): writes the raw samples (int16, native byte order, at eSpeak's own rate,
22050 Hz) to stdout.
"""

from __future__ import annotations

import ctypes
import subprocess
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy is imported by synthesize only: the speaking process skips it
    import numpy as np
    from numpy.typing import NDArray

__all__ = ["RATE_WPM", "SAMPLE_RATE", "VOICE", "synthesize"]

SAMPLE_RATE = 16_000
"""Rate of the samples :func:`synthesize` returns (what PocketSphinx's en-us model expects)."""
VOICE = "en-us+m1"
RATE_WPM = 175
"""Speaking rate, words per minute."""

_ESPEAK_RATE = 22_050
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_RATE_PARAMETER = 1
_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


def synthesize(text: str) -> NDArray[np.int16]:
    """Speak ``text`` with eSpeak NG; returns mono int16 samples at ``SAMPLE_RATE``.

    Raises:
        RuntimeError: eSpeak NG failed (its message is included).
    """
    import numpy as np
    from scipy.signal import resample_poly

    done = subprocess.run([sys.executable, __file__, text], capture_output=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"eSpeak NG could not speak {text!r}: {done.stderr.decode(errors='replace')[-500:]}"
            " Check that espeakng-loader is installed (pip install -e '.[example]')."
        )
    native = np.frombuffer(done.stdout, dtype=np.int16).astype(np.float64)
    # 22050 Hz -> 16000 Hz: 320/441 exactly, by a polyphase filter (deterministic).
    resampled = resample_poly(native, 320, 441)
    return np.asarray(np.clip(np.round(resampled), -32_768, 32_767), dtype=np.int16)


def _speak_raw(text: str) -> bytes:
    """The samples of ``text`` at eSpeak's rate, as raw int16 bytes (this process only)."""
    import espeakng_loader

    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    rate = lib.espeak_Initialize(
        _AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0
    )
    if rate != _ESPEAK_RATE:
        raise RuntimeError(f"eSpeak NG did not start (espeak_Initialize returned {rate})")
    chunks: list[bytes] = []

    def collect(wav: ctypes._Pointer[ctypes.c_short], count: int, events: object) -> int:
        if count > 0:
            chunks.append(ctypes.string_at(wav, count * 2))
        return 0

    callback = _CALLBACK(collect)  # kept referenced until the synthesis returns
    lib.espeak_SetSynthCallback(callback)
    if lib.espeak_SetVoiceByName(VOICE.encode()) != 0:
        raise RuntimeError(f"eSpeak NG has no voice {VOICE!r}")
    lib.espeak_SetParameter(_RATE_PARAMETER, RATE_WPM, 0)
    encoded = text.encode() + b"\0"
    status = lib.espeak_Synth(
        encoded, ctypes.c_size_t(len(encoded)), 0, _POS_CHARACTER, 0, 0, None, None
    )
    lib.espeak_Synchronize()
    if status != 0:
        raise RuntimeError(f"eSpeak NG failed on {text!r} (status {status})")
    return b"".join(chunks)


if __name__ == "__main__":
    sys.stdout.buffer.write(_speak_raw(" ".join(sys.argv[1:])))
