// The fixture GGUF writer round-trips through its own reader and through node-llama-cpp's parser (no model is loaded).
import assert from "node:assert/strict";
import {readFileSync} from "node:fs";
import {mkdir, mkdtemp, rm} from "node:fs/promises";
import path from "node:path";
import {after, before, describe, test} from "node:test";
import {readGgufFileInfo} from "node-llama-cpp";
import {
    alignUp, f16ToF32, f32ToF16, gguf, readGgufHeader, readTensorValues, writeGguf, type GgufMetadata, type GgufTensorSpec
} from "../fixtures/gguf-writer.js";
import {fixtureCacheDir} from "../fixtures/llama-source.js";
import {uniformFill} from "../fixtures/make-tiny-models.js";

const invalidUtf8 = new Uint8Array([0x61, 0xff, 0xfe, 0x62]);

function allTypesMetadata(): GgufMetadata {
    return new Map([
        ["general.architecture", gguf.str("llama")],
        ["t.u8", gguf.u8(255)],
        ["t.i8", gguf.i8(-128)],
        ["t.u16", gguf.u16(65535)],
        ["t.i16", gguf.i16(-32768)],
        ["t.u32", gguf.u32(0xffffffff)],
        ["t.i32", gguf.i32(-0x80000000)],
        ["t.f32", gguf.f32(Math.fround(1e-5))],
        ["t.f64", gguf.f64(Math.PI)],
        ["t.u64", gguf.u64(0xffffffffffffffffn)],
        ["t.i64", gguf.i64(-0x8000000000000000n)],
        ["t.bool.true", gguf.bool(true)],
        ["t.bool.false", gguf.bool(false)],
        ["t.string", gguf.str("héllo, 世界 🦙")],
        ["t.string.empty", gguf.str("")],
        ["t.string.bytes", gguf.str(invalidUtf8)],
        ["t.arr.u8", gguf.arr({elemType: "u8", values: new Uint8Array([0, 1, 255])})],
        ["t.arr.i8", gguf.arr({elemType: "i8", values: [-128, 0, 127]})],
        ["t.arr.u16", gguf.arr({elemType: "u16", values: [0, 65535]})],
        ["t.arr.i16", gguf.arr({elemType: "i16", values: new Int16Array([-32768, 32767])})],
        ["t.arr.u32", gguf.arr({elemType: "u32", values: [0, 0xffffffff]})],
        ["t.arr.i32", gguf.arr({elemType: "i32", values: new Int32Array([-5, 0, 7])})],
        ["t.arr.f32", gguf.arr({elemType: "f32", values: [0.5, -1.25, Math.fround(0.1)]})],
        ["t.arr.f64", gguf.arr({elemType: "f64", values: new Float64Array([Math.E, -0])})],
        ["t.arr.u64", gguf.arr({elemType: "u64", values: [1n, 0xffffffffffffffffn]})],
        ["t.arr.i64", gguf.arr({elemType: "i64", values: new BigInt64Array([-1n, 2n])})],
        ["t.arr.bool", gguf.arr({elemType: "bool", values: [true, false, true]})],
        // Tokens may start with U+FEFF (Gemma's vocabulary has "\uFEFF//" and "\uFEFF\uFEFF"): the reader keeps it.
        ["t.arr.string", gguf.arr({elemType: "string", values: ["a", "", "Ġ Ġ", "<0x0A>", invalidUtf8, "\uFEFF//", "\uFEFF\uFEFF", "\uFEFF"]})],
        ["t.arr.empty", gguf.arr({elemType: "f32", values: []})],
        ["t.arr.nested", gguf.arr({elemType: "array", values: [
            {elemType: "u32", values: [1, 2]}, {elemType: "string", values: ["x"]}, {elemType: "bool", values: []}
        ]})]
    ]);
}

/** The reader returns typed arrays for numeric arrays and plain arrays otherwise; compare element-wise. */
function plain(value: unknown): unknown {
    if (value instanceof Uint8Array && !(value instanceof Buffer))
        return {bytes: [...value]};
    if (ArrayBuffer.isView(value))
        return Array.from(value as unknown as ArrayLike<unknown>);
    if (Array.isArray(value))
        return value.map(plain);
    if (value !== null && typeof value === "object")
        return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
    return value;
}

function ramp(n: number, scale = 1): Float32Array {
    return Float32Array.from({length: n}, (_, i) => (i - n / 2) * scale);
}

describe("gguf-writer", () => {
    let dir: string;
    before(async () => {
        await mkdir(fixtureCacheDir(), {recursive: true});
        dir = await mkdtemp(path.join(fixtureCacheDir(), "gguf-unit-"));
    });
    after(async () => {
        await rm(dir, {recursive: true, force: true});
    });

    test("metadata of every type, arrays included, round-trips in order", async () => {
        const metadata = allTypesMetadata();
        const file = path.join(dir, "meta.gguf");
        const written = await writeGguf(file, metadata, []);
        const header = readGgufHeader(file);
        assert.equal(header.version, 3);
        assert.equal(header.tensors.length, 0);
        assert.deepEqual([...header.metadata.keys()], [...metadata.keys()]);
        for (const [key, value] of metadata)
            assert.deepEqual(plain(header.metadata.get(key)), plain(value), key);
        assert.equal(written.bytes, readFileSync(file).length);
        assert.equal(written.bytes % 32, 0);
    });

    test("tensors: f32 and f16, arrays and fill callbacks, offsets aligned, values intact", async () => {
        const tensors: GgufTensorSpec[] = [
            {name: "a.f32", dims: [3], type: "f32", data: new Float32Array([1, -2, 3.5])},
            {name: "b.f16", dims: [5, 7], type: "f16", data: ramp(35, 0.37)},
            {name: "c.fill", dims: [4, 3, 2], type: "f32", data: (out, start) => out.forEach((_, i) => { out[i] = start + i; })},
            // More than one write chunk (1 << 20 elements), with an odd size so the next tensor needs padding.
            {name: "d.big", dims: [(1 << 20) + 3], type: "f16", data: (out, start) => out.forEach((_, i) => { out[i] = ((start + i) % 2048) - 1024; })},
            {name: "e.after", dims: [1], type: "f32", data: new Float32Array([42])}
        ];
        const file = path.join(dir, "tensors.gguf");
        const written = await writeGguf(file, new Map([["general.name", gguf.str("t")]]), tensors);
        const header = readGgufHeader(file);
        assert.equal(header.alignment, 32);
        assert.equal(header.dataOffset % 32, 0);
        assert.equal(written.dataOffset, header.dataOffset);
        assert.deepEqual(header.tensors.map((t) => [t.name, t.dims, t.type]), tensors.map((t) => [t.name, [...t.dims], t.type === "f32" ? 0 : 1]));
        let expectedOffset = 0;
        for (const [i, info] of header.tensors.entries()) {
            assert.equal(info.offset, expectedOffset, `${info.name} offset is contiguous after padding`);
            assert.equal(info.offset % 32, 0, info.name);
            const bytes = tensors[i]!.dims.reduce((a, b) => a * b, 1) * (tensors[i]!.type === "f32" ? 4 : 2);
            expectedOffset = alignUp(info.offset + bytes, 32);
        }
        assert.equal(header.fileSize, header.dataOffset + expectedOffset, "file ends padded to the alignment");

        assert.deepEqual([...readTensorValues(file, header, "a.f32")], [1, -2, 3.5]);
        assert.deepEqual([...readTensorValues(file, header, "b.f16")], [...ramp(35, 0.37)].map((v) => f16ToF32(f32ToF16(v))));
        assert.deepEqual([...readTensorValues(file, header, "c.fill")], Array.from({length: 24}, (_, i) => i));
        const big = readTensorValues(file, header, "d.big");
        assert.equal(big.length, (1 << 20) + 3);
        for (const i of [0, 1, 2047, 2048, (1 << 20) - 1, 1 << 20, (1 << 20) + 2])
            assert.equal(big[i], (i % 2048) - 1024, `d.big[${i}]`);
        assert.deepEqual([...readTensorValues(file, header, "e.after")], [42]);
    });

    test("general.alignment is honoured", async () => {
        const file = path.join(dir, "align64.gguf");
        await writeGguf(file, new Map([["general.alignment", gguf.u32(64)]]), [
            {name: "x", dims: [3], type: "f16", data: new Float32Array([1, 2, 3])},
            {name: "y", dims: [2, 2], type: "f32", data: new Float32Array([4, 5, 6, 7])}
        ]);
        const header = readGgufHeader(file);
        assert.equal(header.alignment, 64);
        assert.equal(header.dataOffset % 64, 0);
        assert.deepEqual(header.tensors.map((t) => t.offset), [0, 64]);
        assert.deepEqual([...readTensorValues(file, header, "y")], [4, 5, 6, 7]);
        await assert.rejects(writeGguf(path.join(dir, "bad.gguf"), new Map([["general.alignment", gguf.u32(48)]]), []), /power of 2/);
    });

    test("node-llama-cpp's GGUF parser reads the same metadata and tensor infos", async () => {
        const file = path.join(dir, "cross.gguf");
        const metadata: GgufMetadata = new Map([
            ["general.architecture", gguf.str("llama")],
            ["general.name", gguf.str("cross-check")],
            ["llama.block_count", gguf.u32(3)],
            ["llama.attention.layer_norm_rms_epsilon", gguf.f32(1e-5)],
            ["tokenizer.ggml.tokens", gguf.arr({elemType: "string", values: ["<unk>", "<s>", "▁the"]})],
            ["tokenizer.ggml.scores", gguf.arr({elemType: "f32", values: [0, -1.5, -2.25]})],
            ["tokenizer.ggml.token_type", gguf.arr({elemType: "i32", values: [2, 3, 1]})],
            ["tokenizer.ggml.add_bos_token", gguf.bool(true)],
            ["x.i16", gguf.i16(-7)], ["x.u64", gguf.u64(123)], ["x.f64", gguf.f64(0.25)], ["x.i8", gguf.i8(-1)]
        ]);
        await writeGguf(file, metadata, [
            {name: "token_embd.weight", dims: [4, 3], type: "f16", data: ramp(12)},
            {name: "output_norm.weight", dims: [4], type: "f32", data: ramp(4)}
        ]);
        const info = await readGgufFileInfo(file, {readTensorInfo: true});
        assert.equal(info.version, 3);
        const meta = info.metadata as unknown as Record<string, Record<string, unknown>>;
        assert.equal(meta.general?.architecture, "llama");
        assert.equal(meta.general?.name, "cross-check");
        assert.equal(meta.llama?.block_count, 3);
        const tokenizer = meta.tokenizer?.ggml as Record<string, unknown>;
        assert.deepEqual(plain(tokenizer.tokens), ["<unk>", "<s>", "▁the"]);
        assert.deepEqual(plain(tokenizer.scores), [0, -1.5, -2.25]);
        assert.deepEqual(plain(tokenizer.token_type), [2, 3, 1]);
        assert.equal(tokenizer.add_bos_token, true);
        const x = meta.x as Record<string, unknown>;
        assert.equal(x.i16, -7);
        assert.equal(Number(x.u64), 123);
        assert.equal(x.f64, 0.25);
        assert.equal(x.i8, -1);
        assert.deepEqual(info.tensorInfo?.map((t) => [t.name, t.dimensions.map(Number), t.ggmlType, Number(t.offset)]),
            [["token_embd.weight", [4, 3], 1, 0], ["output_norm.weight", [4], 0, 32]]);
    });

    test("float16 conversion rounds to nearest even and keeps specials", () => {
        const cases: [number, number][] = [
            [0, 0x0000], [-0, 0x8000], [1, 0x3c00], [-2, 0xc000], [0.5, 0x3800], [65504, 0x7bff],
            [65520, 0x7c00], [1e6, 0x7c00], [-Infinity, 0xfc00], [2 ** -24, 0x0001], [2 ** -14, 0x0400],
            [2 ** -25, 0x0000], [3 * 2 ** -25, 0x0002], [1 + 2 ** -11, 0x3c00], [1 + 3 * 2 ** -11, 0x3c02],
            [Math.fround(0.1), 0x2e66], [-Math.fround(1 / 3), 0xb555]
        ];
        for (const [value, bits] of cases)
            assert.equal(f32ToF16(value), bits, `f32ToF16(${value})`);
        assert.ok(Number.isNaN(f16ToF32(f32ToF16(NaN))));
        for (let h = 0; h < 0x10000; h++) {
            const v = f16ToF32(h);
            if (!Number.isNaN(v))
                assert.equal(f32ToF16(v), h, `binary16 0x${h.toString(16)} round-trips`);
        }
    });

    test("rejects bad input", async () => {
        await assert.rejects(writeGguf(path.join(dir, "r1.gguf"), new Map([["k", gguf.u8(256)]]), []), RangeError);
        await assert.rejects(writeGguf(path.join(dir, "r2.gguf"), new Map([["k", gguf.i32(1.5)]]), []), RangeError);
        const t = {name: "t", dims: [2], type: "f32" as const, data: new Float32Array(2)};
        await assert.rejects(writeGguf(path.join(dir, "r3.gguf"), new Map(), [t, t]), /duplicate/);
        await assert.rejects(writeGguf(path.join(dir, "r4.gguf"), new Map(), [{...t, dims: [3]}]), /values for dims/);
        await assert.rejects(writeGguf(path.join(dir, "r5.gguf"), new Map(), [{...t, dims: [0]}]), /bad dims/);
        assert.throws(() => readGgufHeader(path.join(dir, "missing.gguf")), /ENOENT/);
    });

    test("worker threads write the same bytes as one thread, portable fills and in-memory tensors mixed", async () => {
        // Several chunks per tensor (1 Mi elements each), odd sizes (padding between tensors), both types.
        const tensors = (): GgufTensorSpec[] => [
            {name: "a", dims: [1000, 2500], type: "f16", data: uniformFill(7, "a", 0, 0.5)},
            {name: "norm", dims: [37], type: "f32", data: Float32Array.from({length: 37}, (_, i) => i / 7)},
            {name: "b", dims: [777, 3001], type: "f32", data: uniformFill(7, "b", 1, 0.05)},
            {name: "c", dims: [3, 5], type: "f16", data: uniformFill(7, "c", 0, 2)},
            {name: "d", dims: [4096, 600], type: "f16", data: uniformFill(7, "d", 0, 0.1)}
        ];
        const metadata = new Map([["general.name", gguf.str("parallel")]]);
        const one = await writeGguf(path.join(dir, "one.gguf"), metadata, tensors());
        const three = await writeGguf(path.join(dir, "three.gguf"), metadata, tensors(), {workers: 3});
        assert.equal(three.bytes, one.bytes);
        assert.equal(three.dataOffset, one.dataOffset);
        const bytesOne = readFileSync(one.path), bytesThree = readFileSync(three.path);
        assert.equal(bytesThree.length, bytesOne.length);
        assert.ok(bytesThree.equals(bytesOne), "the files differ");
        // and the values are the fills' (not zeros left by a worker that wrote nothing)
        const header = readGgufHeader(three.path);
        const d = readTensorValues(three.path, header, "d");
        assert.ok(d.some((value) => value !== 0));
    });
});
