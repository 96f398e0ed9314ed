// novabox browser console: a small RFB 3.8 client over a WebSocket to the page's own
// server. Raw encoding in a 32-bit RGBX pixel format (straight into ImageData), CopyRect
// (scrolls), the rich-cursor pseudo-encoding (the guest's pointer shape becomes the CSS cursor), the
// desktop-size pseudo-encodings, and QEMU extended key events (scan codes from
// KeyboardEvent.code, so the guest's own keyboard layout applies).
"use strict";

const canvas = document.getElementById("screen");
const ctx = canvas.getContext("2d");
const statusEl = document.getElementById("status");
const fitBox = document.getElementById("fit");

// KeyboardEvent.code -> XT scan code (0xE0xx for extended keys).
const XT = {
  Escape: 0x01, Digit1: 0x02, Digit2: 0x03, Digit3: 0x04, Digit4: 0x05, Digit5: 0x06,
  Digit6: 0x07, Digit7: 0x08, Digit8: 0x09, Digit9: 0x0a, Digit0: 0x0b, Minus: 0x0c,
  Equal: 0x0d, Backspace: 0x0e, Tab: 0x0f, KeyQ: 0x10, KeyW: 0x11, KeyE: 0x12, KeyR: 0x13,
  KeyT: 0x14, KeyY: 0x15, KeyU: 0x16, KeyI: 0x17, KeyO: 0x18, KeyP: 0x19, BracketLeft: 0x1a,
  BracketRight: 0x1b, Enter: 0x1c, ControlLeft: 0x1d, KeyA: 0x1e, KeyS: 0x1f, KeyD: 0x20,
  KeyF: 0x21, KeyG: 0x22, KeyH: 0x23, KeyJ: 0x24, KeyK: 0x25, KeyL: 0x26, Semicolon: 0x27,
  Quote: 0x28, Backquote: 0x29, ShiftLeft: 0x2a, Backslash: 0x2b, KeyZ: 0x2c, KeyX: 0x2d,
  KeyC: 0x2e, KeyV: 0x2f, KeyB: 0x30, KeyN: 0x31, KeyM: 0x32, Comma: 0x33, Period: 0x34,
  Slash: 0x35, ShiftRight: 0x36, NumpadMultiply: 0x37, AltLeft: 0x38, Space: 0x39,
  CapsLock: 0x3a, F1: 0x3b, F2: 0x3c, F3: 0x3d, F4: 0x3e, F5: 0x3f, F6: 0x40, F7: 0x41,
  F8: 0x42, F9: 0x43, F10: 0x44, NumLock: 0x45, ScrollLock: 0x46, Numpad7: 0x47,
  Numpad8: 0x48, Numpad9: 0x49, NumpadSubtract: 0x4a, Numpad4: 0x4b, Numpad5: 0x4c,
  Numpad6: 0x4d, NumpadAdd: 0x4e, Numpad1: 0x4f, Numpad2: 0x50, Numpad3: 0x51, Numpad0: 0x52,
  NumpadDecimal: 0x53, IntlBackslash: 0x56, F11: 0x57, F12: 0x58, NumpadEnter: 0xe01c,
  ControlRight: 0xe01d, NumpadDivide: 0xe035, PrintScreen: 0xe037, AltRight: 0xe038,
  Home: 0xe047, ArrowUp: 0xe048, PageUp: 0xe049, ArrowLeft: 0xe04b, ArrowRight: 0xe04d,
  End: 0xe04f, ArrowDown: 0xe050, PageDown: 0xe051, Insert: 0xe052, Delete: 0xe053,
  MetaLeft: 0xe05b, MetaRight: 0xe05c, ContextMenu: 0xe05d,
};

// Keysyms for keys whose `key` is not a single character.
const KEYSYM = {
  Backspace: 0xff08, Tab: 0xff09, Enter: 0xff0d, Escape: 0xff1b, Delete: 0xffff,
  Home: 0xff50, ArrowLeft: 0xff51, ArrowUp: 0xff52, ArrowRight: 0xff53, ArrowDown: 0xff54,
  PageUp: 0xff55, PageDown: 0xff56, End: 0xff57, Insert: 0xff63, Shift: 0xffe1,
  Control: 0xffe3, Alt: 0xffe9, Meta: 0xffeb, CapsLock: 0xffe5, NumLock: 0xff7f,
  ContextMenu: 0xff67, F1: 0xffbe, F2: 0xffbf, F3: 0xffc0, F4: 0xffc1, F5: 0xffc2,
  F6: 0xffc3, F7: 0xffc4, F8: 0xffc5, F9: 0xffc6, F10: 0xffc7, F11: 0xffc8, F12: 0xffc9,
};

function keysymOf(e) {
  if (e.key && e.key.length === 1) {
    const c = e.key.codePointAt(0);
    return c < 0x100 ? c : 0x01000000 | c;
  }
  return KEYSYM[e.key] || 0;
}

class Rfb {
  constructor(url) {
    this.buf = new Uint8Array(0);
    this.state = "version";
    this.width = 0;
    this.height = 0;
    this.image = null;
    this.extKeys = false;
    this.extSize = false;
    this.buttons = 0;
    this.ws = new WebSocket(url, ["binary"]);
    this.ws.binaryType = "arraybuffer";
    this.ws.onmessage = (m) => this.receive(new Uint8Array(m.data));
    this.ws.onclose = () => this.setStatus("disconnected", true);
    this.ws.onerror = () => this.setStatus("connection error", true);
  }

  setStatus(s, final) {
    statusEl.textContent = s;
    document.body.dataset.state = final ? "closed" : this.state;
  }

  send(bytes) {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(new Uint8Array(bytes));
  }

  receive(data) {
    const b = new Uint8Array(this.buf.length + data.length);
    b.set(this.buf);
    b.set(data, this.buf.length);
    this.buf = b;
    for (;;) {
      const used = this.step();
      if (used === 0) break;
      this.buf = this.buf.subarray(used);
    }
  }

  u16(i) { return (this.buf[i] << 8) | this.buf[i + 1]; }
  u32(i) { return ((this.buf[i] << 24) >>> 0) + (this.buf[i + 1] << 16) + (this.buf[i + 2] << 8) + this.buf[i + 3]; }
  s32(i) { return this.u32(i) | 0; }

  // Consume one protocol unit from this.buf; return bytes used, 0 for "need more".
  step() {
    const b = this.buf;
    switch (this.state) {
      case "version":
        if (b.length < 12) return 0;
        this.send(Array.from("RFB 003.008\n", (c) => c.charCodeAt(0)));
        this.state = "sectypes";
        return 12;
      case "sectypes": {
        if (b.length < 1) return 0;
        const n = b[0];
        if (b.length < 1 + n) return 0;
        const types = Array.from(b.subarray(1, 1 + n));
        if (!types.includes(1)) {
          this.setStatus("this server wants a password; use a VNC client", true);
          this.ws.close();
          return 1 + n;
        }
        this.send([1]);
        this.state = "secresult";
        return 1 + n;
      }
      case "secresult":
        if (b.length < 4) return 0;
        if (this.u32(0) !== 0) { this.setStatus("refused", true); this.ws.close(); return 4; }
        this.send([1]); // shared
        this.state = "init";
        return 4;
      case "init": {
        if (b.length < 24) return 0;
        const nameLen = this.u32(20);
        if (b.length < 24 + nameLen) return 0;
        this.resize(this.u16(0), this.u16(2));
        document.title = new TextDecoder().decode(b.subarray(24, 24 + nameLen)) + " — console";
        // 32 bpp, depth 24, little-endian, true colour, R at bit 0: bytes R,G,B,X.
        this.send([0, 0, 0, 0, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 0, 8, 16, 0, 0, 0]);
        const encs = [0, 1, -223, -239, -258, -308];
        const m = [2, 0, 0, encs.length];
        for (const e of encs) m.push((e >>> 24) & 255, (e >>> 16) & 255, (e >>> 8) & 255, e & 255);
        this.send(m);
        this.request(false);
        this.state = "normal";
        this.setStatus(`connected: ${this.width}×${this.height}`);
        return 24 + nameLen;
      }
      case "normal":
        return this.message();
      default:
        return 0;
    }
  }

  request(incremental) {
    const w = this.width, h = this.height;
    this.send([3, incremental ? 1 : 0, 0, 0, 0, 0, w >> 8, w & 255, h >> 8, h & 255]);
  }

  resize(w, h) {
    this.width = w;
    this.height = h;
    canvas.width = w;
    canvas.height = h;
    this.image = ctx.createImageData(w, h);
    this.setStatus(`connected: ${w}×${h}`);
    document.body.dataset.size = `${w}x${h}`;
  }

  // One server message (a whole FramebufferUpdate at once).
  message() {
    const b = this.buf;
    if (b.length < 1) return 0;
    switch (b[0]) {
      case 0: { // FramebufferUpdate
        if (b.length < 4) return 0;
        const n = this.u16(2);
        let at = 4;
        const rects = [];
        for (let i = 0; i < n; i++) {
          if (b.length < at + 12) return 0;
          const r = { x: this.u16(at), y: this.u16(at + 2), w: this.u16(at + 4), h: this.u16(at + 6), enc: this.s32(at + 8), at: at + 12 };
          at += 12;
          let len = 0;
          if (r.enc === 0) len = r.w * r.h * 4;
          else if (r.enc === 1) len = 4;
          else if (r.enc === -239) len = r.w * r.h * 4 + Math.ceil(r.w / 8) * r.h;
          else if (r.enc === -308) {
            if (b.length < at + 4) return 0;
            len = 4 + 16 * b[at];
          } else if (r.enc === -223 || r.enc === -258) len = 0;
          else { this.setStatus(`unexpected encoding ${r.enc}`, true); this.ws.close(); return b.length; }
          if (b.length < at + len) return 0;
          at += len;
          rects.push(r);
        }
        for (const r of rects) this.apply(r);
        this.request(true);
        return at;
      }
      case 2: return 1; // Bell
      case 3: { // ServerCutText
        if (b.length < 8) return 0;
        const len = this.u32(4);
        if (b.length < 8 + len) return 0;
        return 8 + len;
      }
      default:
        this.setStatus(`unexpected message ${b[0]}`, true);
        this.ws.close();
        return b.length;
    }
  }

  apply(r) {
    const b = this.buf;
    if (r.enc === 0) {
      const img = this.image.data;
      for (let y = 0; y < r.h; y++) {
        let src = r.at + y * r.w * 4;
        let dst = ((r.y + y) * this.width + r.x) * 4;
        for (let x = 0; x < r.w; x++, src += 4, dst += 4) {
          img[dst] = b[src]; img[dst + 1] = b[src + 1]; img[dst + 2] = b[src + 2]; img[dst + 3] = 255;
        }
      }
      ctx.putImageData(this.image, 0, 0, r.x, r.y, r.w, r.h);
      document.body.dataset.updates = String((Number(document.body.dataset.updates) || 0) + 1);
    } else if (r.enc === 1) {
      // CopyRect (a scroll): rows move within the picture; copy in the order that does
      // not overwrite rows still to be read.
      const img = this.image.data;
      const sx = (b[r.at] << 8) | b[r.at + 1], sy = (b[r.at + 2] << 8) | b[r.at + 3];
      const rowBytes = r.w * 4;
      const ys = [...Array(r.h).keys()];
      if (sy < r.y) ys.reverse();
      for (const y of ys) {
        const src = ((sy + y) * this.width + sx) * 4;
        img.copyWithin(((r.y + y) * this.width + r.x) * 4, src, src + rowBytes);
      }
      ctx.putImageData(this.image, 0, 0, r.x, r.y, r.w, r.h);
      document.body.dataset.copies = String((Number(document.body.dataset.copies) || 0) + 1);
    } else if (r.enc === -223 || r.enc === -308) {
      this.extSize = this.extSize || r.enc === -308;
      if (r.enc === -223 || r.x === 0 || (r.x === 1 && r.y === 0)) this.resize(r.w, r.h);
    } else if (r.enc === -239) {
      this.cursor(r);
    } else if (r.enc === -258) {
      this.extKeys = true;
    }
  }

  cursor(r) {
    if (r.w === 0 || r.h === 0) { canvas.style.cursor = "default"; return; }
    const c = document.createElement("canvas");
    c.width = r.w; c.height = r.h;
    const cx = c.getContext("2d");
    const img = cx.createImageData(r.w, r.h);
    const maskAt = r.at + r.w * r.h * 4;
    const row = Math.ceil(r.w / 8);
    for (let y = 0; y < r.h; y++) {
      for (let x = 0; x < r.w; x++) {
        const s = r.at + (y * r.w + x) * 4, d = (y * r.w + x) * 4;
        const on = this.buf[maskAt + y * row + (x >> 3)] & (0x80 >> (x & 7));
        img.data[d] = this.buf[s]; img.data[d + 1] = this.buf[s + 1]; img.data[d + 2] = this.buf[s + 2];
        img.data[d + 3] = on ? 255 : 0;
      }
    }
    cx.putImageData(img, 0, 0);
    canvas.style.cursor = `url(${c.toDataURL()}) ${r.x} ${r.y}, default`;
    document.body.dataset.cursor = `${r.w}x${r.h}`;
  }

  key(e, down) {
    const code = XT[e.code] || 0;
    const sym = keysymOf(e);
    if (this.extKeys && code) {
      const kc = code > 0xff ? 0x80 | (code & 0x7f) : code;
      this.send([255, 0, 0, down ? 1 : 0, (sym >>> 24) & 255, (sym >>> 16) & 255, (sym >>> 8) & 255, sym & 255,
        0, 0, (kc >> 8) & 255, kc & 255]);
    } else if (sym) {
      this.send([4, down ? 1 : 0, 0, 0, (sym >>> 24) & 255, (sym >>> 16) & 255, (sym >>> 8) & 255, sym & 255]);
    }
  }

  pointer(x, y, buttons) {
    x = Math.max(0, Math.min(this.width - 1, Math.round(x)));
    y = Math.max(0, Math.min(this.height - 1, Math.round(y)));
    this.send([5, buttons, x >> 8, x & 255, y >> 8, y & 255]);
  }

  askSize(w, h) {
    if (!this.extSize || w < 64 || h < 64) return;
    this.send([251, 0, w >> 8, w & 255, h >> 8, h & 255, 1, 0,
      0, 0, 0, 0, 0, 0, 0, 0, w >> 8, w & 255, h >> 8, h & 255, 0, 0, 0, 0]);
  }
}

const proto = location.protocol === "https:" ? "wss:" : "ws:";
const rfb = new Rfb(`${proto}//${location.host}/websockify`);
window.novaboxConsole = rfb;

canvas.addEventListener("keydown", (e) => { e.preventDefault(); rfb.key(e, true); });
canvas.addEventListener("keyup", (e) => { e.preventDefault(); rfb.key(e, false); });

function pos(e) {
  const r = canvas.getBoundingClientRect();
  return [(e.clientX - r.left) * canvas.width / r.width, (e.clientY - r.top) * canvas.height / r.height];
}
// DOM buttons: 1 left, 2 right, 4 middle. RFB: 1 left, 2 middle, 4 right.
function rfbButtons(b) { return (b & 1) | ((b & 4) >> 1) | ((b & 2) << 1); }
canvas.addEventListener("mousemove", (e) => rfb.pointer(...pos(e), rfbButtons(e.buttons)));
canvas.addEventListener("mousedown", (e) => { canvas.focus(); e.preventDefault(); rfb.pointer(...pos(e), rfbButtons(e.buttons)); });
canvas.addEventListener("mouseup", (e) => { e.preventDefault(); rfb.pointer(...pos(e), rfbButtons(e.buttons)); });
canvas.addEventListener("contextmenu", (e) => e.preventDefault());
canvas.addEventListener("wheel", (e) => {
  e.preventDefault();
  const [x, y] = pos(e);
  const bit = e.deltaY < 0 ? 8 : 16;
  rfb.pointer(x, y, rfbButtons(e.buttons) | bit);
  rfb.pointer(x, y, rfbButtons(e.buttons));
}, { passive: false });

document.getElementById("cad").addEventListener("click", () => {
  for (const [code, down] of [["ControlLeft", 1], ["AltLeft", 1], ["Delete", 1], ["Delete", 0], ["AltLeft", 0], ["ControlLeft", 0]]) {
    rfb.key({ code, key: code === "Delete" ? "Delete" : code.replace("Left", "") }, !!down);
  }
  canvas.focus();
});

let resizeTimer = 0;
function fit() {
  if (!fitBox.checked) return;
  clearTimeout(resizeTimer);
  const wrap = document.getElementById("wrap");
  resizeTimer = setTimeout(() => rfb.askSize(wrap.clientWidth & ~7, wrap.clientHeight), 300);
}
window.addEventListener("resize", fit);
fitBox.addEventListener("change", fit);
canvas.focus();
