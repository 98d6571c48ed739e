"""The extension's pure protocol module: node's unit tests, and its output checked by the
Python reference implementation (klasblik.protocol)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from klasblik import protocol
from tests.support.timing import timeout

REPO = Path(__file__).resolve().parents[2]
PROTOCOL_JS = REPO / "agent" / "chrome" / "protocol.js"


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail(
            "node is not installed: the Debian nodejs package runs the extension's unit tests"
        )
    return node


def _run_js(script: str) -> str:
    """Run an ES module snippet that imports the extension's protocol module as P."""
    return _node_module(f"import * as P from {json.dumps(PROTOCOL_JS.as_uri())};\n{script}")


def _node_module(source: str) -> str:
    """Run ES module source in node; its standard output (a failure shows its errors)."""
    done = subprocess.run(
        [_node(), "--input-type=module", "-e", source],
        capture_output=True,
        text=True,
        timeout=timeout(60),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_node_unit_tests_pass() -> None:
    """`node --test agent/chrome/test/` exits 0 (every JS unit test passes)."""
    done = subprocess.run(
        [_node(), "--test", "agent/chrome/test/"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout(100),
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "# fail 0" in done.stdout


def test_js_frame_is_accepted_by_python_decode_frame() -> None:
    """A frame built by the extension decodes with klasblik.protocol.decode_frame, field by field."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 36), (200, 30, 40)).save(buf, "JPEG", quality=80)
    jpeg = buf.getvalue()
    out = _run_js(
        f"const img = Uint8Array.from({json.dumps(list(jpeg))});\n"
        "const f = P.buildFrame({kind: 2, encoding: P.Encoding.JPEG, width: 64, height: 36,"
        " seq: 4294967301, capturedAt: 1795414408927}, img);\n"
        "process.stdout.write(Buffer.from(f).toString('hex'));"
    )
    frame = bytes.fromhex(out)
    header = protocol.decode_frame(frame)
    assert header == protocol.FrameHeader(
        kind=protocol.FrameKind.FOCUS,
        encoding=protocol.Encoding.JPEG,
        width=64,
        height=36,
        seq=5,
        captured_at_ms=1795414408927,
    )
    assert frame[protocol.FRAME_HEADER_SIZE :] == jpeg
    assert protocol.encode_frame(header, jpeg) == frame


def test_js_messages_pass_python_validation() -> None:
    """hello, heartbeat, tabs and capture_error from the JS module pass the agent schema."""
    out = _run_js(
        "const s = new P.AgentSession();\n"
        "s.receive(JSON.stringify({type: 'watch', mode: 'focus', width: 1280, height: 720,"
        " interval_ms: 500, quality: 70, encoding: 'webp', tabs: 'all', viewers: []}));\n"
        "const raw = [{title: 'x'.repeat(900), url: 'https://e.org/' + 'y'.repeat(5000),"
        " active: true, windowId: 3}, {title: 'B', url: 'chrome://newtab/', active: false, windowId: 4}];\n"
        "const msgs = [P.buildHello({token: 't', account: 'a@school.example', deviceId: 'dev-1',"
        " os: 'Linux', agentVersion: '0.1.0'}), s.nextHeartbeat(), s.tabsFor(raw),"
        " P.buildCaptureError(P.NOT_CAPTURABLE, 'page')];\n"
        "process.stdout.write(JSON.stringify(msgs));"
    )
    messages = json.loads(out)
    for msg in messages:
        protocol.decode_message(json.dumps(msg), "agent")
    assert [m["type"] for m in messages] == ["hello", "heartbeat", "tabs", "capture_error"]
    assert messages[0]["device"]["kind"] == "chromebook"
    assert messages[3]["code"] == "page"
    tabs = messages[2]["tabs"]
    assert [len(tabs[0]["title"]), len(tabs[0]["url"])] == [512, 2048]
    assert [t["window"] for t in tabs] == [3, 4]


def test_js_accepts_what_python_server_sends() -> None:
    """welcome and watch encoded by klasblik.protocol are accepted by the JS session."""
    welcome = {
        "type": "welcome",
        "protocol": 1,
        "session": "abc",
        "display_name": "Anna B.",
        "heartbeat_s": 20,
        "max_frame_bytes": 1048576,
    }
    watch = {
        "type": "watch",
        "mode": "grid",
        "width": 400,
        "height": 225,
        "interval_ms": 2000,
        "quality": 55,
        "encoding": "jpeg",
        "tabs": "active",
        "viewers": ["M. de Vries"],
    }
    texts = [protocol.encode_message(m, "server_agent") for m in (welcome, watch)]
    out = _run_js(
        f"const s = new P.AgentSession(); const texts = {json.dumps(texts)};\n"
        "const kinds = texts.map((t) => s.receive(t).kind);\n"
        "process.stdout.write(JSON.stringify({kinds, mode: s.watch.mode, badge: P.badgeFor(s.watch, true)}));"
    )
    result = json.loads(out)
    assert result["kinds"] == ["welcome", "watch"]
    assert result["mode"] == "grid"
    assert "M. de Vries" in result["badge"]["title"]


def test_webcrypto_proof_verifies_on_the_server_and_a_tampered_one_does_not() -> None:
    """A challenge answer made as the extension makes it (WebCrypto ECDSA P-256, a
    non-extractable private key, P.proofPayload, P.base64url) verifies with the server's
    check; the same answer for another nonce or device, or with one byte changed, does not."""
    from klasblik.server.auth.agent_identity import verify_proof

    out = _run_js(
        "const pair = await crypto.subtle.generateKey({name: 'ECDSA', namedCurve: 'P-256'},"
        " false, ['sign', 'verify']);\n"
        "const spki = P.base64url(await crypto.subtle.exportKey('spki', pair.publicKey));\n"
        "const sig = P.base64url(await crypto.subtle.sign({name: 'ECDSA', hash: 'SHA-256'},"
        " pair.privateKey, P.proofPayload('n0nce-1', 'dev-1')));\n"
        "const hello = P.buildHello({token: 't', account: 'a@school.example', deviceId: 'dev-1',"
        " deviceKey: spki, identity: {kind: 'google', token: 'x.y.z'}});\n"
        "let exported = true; try { await crypto.subtle.exportKey('pkcs8', pair.privateKey); }"
        " catch { exported = false; }\n"
        "process.stdout.write(JSON.stringify({spki, sig, hello, exported,"
        " proof: P.buildProof('n0nce-1', sig)}));"
    )
    got = json.loads(out)
    assert got["exported"] is False  # the private key cannot be read out
    protocol.decode_message(json.dumps(got["hello"]), "agent")
    protocol.decode_message(json.dumps(got["proof"]), "agent")
    assert got["hello"]["device"]["key"] == got["spki"]
    assert protocol.proof_payload("n0nce-1", "dev-1") == b"klasblik-device-proof/1\nn0nce-1\ndev-1"
    assert verify_proof(got["spki"], "n0nce-1", "dev-1", got["sig"])
    assert not verify_proof(got["spki"], "n0nce-2", "dev-1", got["sig"])
    assert not verify_proof(got["spki"], "n0nce-1", "dev-2", got["sig"])
    flipped = ("A" if got["sig"][5] != "A" else "B").join((got["sig"][:5], got["sig"][6:]))
    assert not verify_proof(got["spki"], "n0nce-1", "dev-1", flipped)


def test_js_scroll_delta_is_accepted_by_python_decode_tiles_and_paints_the_page() -> None:
    """A delta the extension's DeltaState makes of a page scrolled by 53 px, scaled 3.2
    times (1280x720 into 400x225: no whole-row move without its rows following the page),
    passes klasblik.protocol.decode_tiles (what the server checks) with a copy tile first
    and palette PNG tiles Pillow reads; painted on the last picture it is the new one."""
    import io

    from PIL import Image

    tiles_js = (REPO / "agent" / "chrome" / "tiles.js").as_uri()
    source = f"""import {{ DeltaState }} from {json.dumps(tiles_js)};
const [sw, sh, w, h] = [1280, 720, 400, 225];
function page(top) {{ // text lines in ink on paper, edges smoothed by the scaling
  const out = new Uint8ClampedArray(sw * sh * 4).fill(255);
  for (let y = 0; y < sh; y += 1) {{
    const d = y + top;
    if (d % 27 >= 18) continue;
    for (let x = 24; x < sw - 40; x += 1) {{
      if ((Math.imul(((d / 27) | 0) * 977 + (x >> 3), 2654435761) >>> 20) % 5 === 0) continue;
      if ((Math.imul(d * 7919 + (x >> 1), 2246822519) >>> 12) % 3) continue;
      out.fill(20, (y * sw + x) * 4, (y * sw + x) * 4 + 3);
    }}
  }}
  return out;
}}
const state = new DeltaState({{ jpeg: async () => {{ throw new Error("text must not be JPEG"); }} }});
const first = state.scale(page(1000), sw, sh, w, h);
await state.encode(first, 0.55, 0);
state.commit();
const next = state.scale(page(1053), sw, sh, w, h);
const coded = await state.encode(next, 0.55, 1000, {{ colours: 8 }});
const hex = (a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString("hex");
process.stdout.write(JSON.stringify({{ delta: coded.delta, body: hex(coded.image),
  first: hex(first.data), next: hex(next.data) }}));
"""
    out = json.loads(_node_module(source))
    assert out["delta"] is True
    body = bytes.fromhex(out["body"])
    tiles = protocol.decode_tiles(body, 400, 225)
    assert tiles[0].encoding == protocol.TileEncoding.COPY
    assert tiles[0].height >= 225 - 17 - 32, tiles[0]
    assert all(t.encoding == protocol.TileEncoding.PNG for t in tiles[1:])
    assert len(body) < 0.5 * sum(4 * t.width * t.height for t in tiles[1:])
    before = Image.frombytes("RGBA", (400, 225), bytes.fromhex(out["first"])).convert("RGB")
    want = Image.frombytes("RGBA", (400, 225), bytes.fromhex(out["next"])).convert("RGB")
    painted = before.copy()
    for t in tiles:
        if t.encoding == protocol.TileEncoding.COPY:
            assert t.source is not None
            sx, sy = t.source
            area = before.crop((sx, sy, sx + t.width, sy + t.height))
        else:
            png = Image.open(io.BytesIO(t.data))
            assert png.mode == "P" and len(png.getcolors() or []) <= 8
            area = png.convert("RGB")
        painted.paste(area, (t.x, t.y))
    copy = tiles[0]
    band = (copy.x, copy.y, copy.x + copy.width, copy.y + copy.height)
    assert painted.crop(band).tobytes() == want.crop(band).tobytes()  # the copy: exact
    diff = [abs(a - b) for a, b in zip(painted.tobytes(), want.tobytes(), strict=True)]
    assert sum(diff) / len(diff) < 4, sum(diff) / len(diff)  # 8 colours: close to it
