import assert from "node:assert/strict";
import {createHash} from "node:crypto";
import {describe, it} from "node:test";
import {makeExample, makeQuestionSet, questionKinds, seededRandom} from "../fixtures/answer-corpus.js";
import {sameTypeCandidates} from "../fixtures/answer-guess-rate.js";

describe("answer corpus", () => {
    it("keeps the benchmark's questions when training options are added", () => {
        // The hash of `npm run bench -- answers`' default set (seed 7, 20 a kind, 6 sources), equal to what the
        // generator gave before ExampleOptions existed: a change here changes every number in bench/RESULTS.md.
        const set = makeQuestionSet(7, "held-out", 20, 6);
        assert.equal(createHash("sha256").update(JSON.stringify(set)).digest("hex"),
            "8bbfb15a9e8f05cdac68a74c15df9688c4a79b181cf074c576b0eb25b7ed158d");
    });

    it("gives every distractor the gold's type with sameType 1", () => {
        const rng = seededRandom(11);
        for (let i = 0; i < 60; i++) {
            const kind = questionKinds[i % 3]!;
            const example = makeExample(rng, "train", kind, 6, {sameType: 1});
            // Towns take two chunks (the person chunk that names the town, then the town's): three fit in six.
            const expected = kind === "cross-chunk" ? 3 : kind === "two-hop" ? 5 : 6;
            assert.equal(sameTypeCandidates(example), expected, `${kind}: ${example.question}\n${example.chunks.map((c) => c.text).join("\n")}`);
        }
    });

    it("leaves the answer's type ambiguous more often with sameType than without", () => {
        const guess = (sameType: number) => {
            const rng = seededRandom(5);
            let sum = 0;
            for (let i = 0; i < 300; i++)
                sum += 1 / sameTypeCandidates(makeExample(rng, "train", questionKinds[i % 3]!, 4, {sameType}));
            return sum / 300;
        };
        assert.ok(guess(0.7) < guess(0) - 0.15, `type-guess rate ${guess(0.7)} with sameType 0.7, ${guess(0)} without`);
    });
    it("adds extra questions without changing the prompt, each answered in the source it cites", () => {
        for (const kind of questionKinds)
            for (let seed = 0; seed < 40; seed++) {
                const plain = makeExample(seededRandom(seed), "train", kind, 6, {sameType: 0.5});
                const example = makeExample(seededRandom(seed), "train", kind, 6, {sameType: 0.5, extraQuestions: 5});
                const {extra, ...rest} = example;
                assert.deepEqual(rest, plain);
                assert.ok(extra != null && extra.length >= 2 && extra.length <= 5, `${extra?.length} extra questions`);
                const answers = new Set([example.answer]);
                for (const question of extra) {
                    assert.ok(example.chunks[question.answerSource - 1]!.text.includes(question.answer), `${question.question} -> ${question.target}`);
                    assert.ok(!answers.has(question.answer), `${question.answer} repeats an earlier answer`);
                    answers.add(question.answer);
                    if (question.kind === "cross-chunk")
                        assert.match(example.chunks[question.answerSource - 1]!.text, /^It/);
                }
            }
    });
});
