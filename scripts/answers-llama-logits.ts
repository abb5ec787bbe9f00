// llama.cpp's next-token logits for a held-out answer prompt, as JSON on stdout: the reference that
// scripts/answers-init-check.py compares train-answers.py's --init-gguf import with.
//
//   npx tsx scripts/answers-llama-logits.ts MODEL.gguf [--seed S] [--kind one-hop|two-hop|cross-chunk] [--chunks N]
//
// The prompt is Weft's own (test/fixtures/answer-tokens.ts: BOS, numbered sources, question, "Answer:"), tokenized by
// the model's tokenizer; the logits are those after its last token, before any answer token.
import {parseArgs} from "node:util";
import {getLlama, LlamaLogLevel} from "node-llama-cpp";
import {makeQuestionSet, questionKinds} from "../test/fixtures/answer-corpus.js";
import {exampleTokens} from "../test/fixtures/answer-tokens.js";
import {logitsAfter} from "../test/helpers/logits.js";

const {values, positionals} = parseArgs({
    allowPositionals: true,
    options: {seed: {type: "string", default: "7"}, kind: {type: "string", default: "cross-chunk"}, chunks: {type: "string", default: "6"}}
});
const modelPath = positionals[0];
if (modelPath == null)
    throw new Error("usage: answers-llama-logits.ts MODEL.gguf [--seed S] [--kind KIND] [--chunks N]");
const example = makeQuestionSet(Number(values.seed), "held-out", 1, Number(values.chunks)).find((e) => e.kind === values.kind);
if (example == null)
    throw new Error(`--kind is one of ${questionKinds.join(", ")}, got ${values.kind}`);

const llama = await getLlama({gpu: false, maxThreads: 1, build: "never", logLevel: LlamaLogLevel.error});
const model = await llama.loadModel({modelPath});
const encoded = exampleTokens(model, example);
if (encoded == null)
    throw new Error("the example's answer does not tokenize as a continuation of its prompt");
const prompt = encoded.tokens.slice(0, encoded.answerStart);
const context = await model.createContext({contextSize: 1024, threads: 1, sequences: 1});
const logits = await logitsAfter(context.getSequence(), model.fileInfo.metadata.tokenizer.ggml.tokens.length, prompt);
process.stdout.write(JSON.stringify({question: example.question, target: example.target, tokens: prompt,
    answer: encoded.tokens.slice(encoded.answerStart), logits: Array.from(logits)}));
await context.dispose();
await model.dispose();
