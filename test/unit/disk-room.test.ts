import assert from "node:assert/strict";
import {describe, it} from "node:test";
import {diskHasRoom} from "../../main/engine/cache-warming.js";

describe("whether warming's lead pass has disk room (cache-warming.ts)", () => {
    it("needs room for one more file of the average size, and a disk tier at all", () => {
        assert.equal(diskHasRoom({entries: 4, bytes: 400, budgetBytes: 500}), true);
        assert.equal(diskHasRoom({entries: 4, bytes: 401, budgetBytes: 500}), false);
        assert.equal(diskHasRoom({entries: 0, bytes: 0, budgetBytes: 1}), true);
        assert.equal(diskHasRoom({entries: 0, bytes: 0, budgetBytes: 0}), false);
    });
});
