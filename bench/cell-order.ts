/**
 * How far a sequence's cells (positions in cell-index order) are from position order: how many cells have a lower
 * position somewhere after them, and the largest such drop. A cell holding an earlier position than one before it
 * makes the GPU's flash attention run a query tile past its own positions.
 */
export function cellOrder(positions: readonly number[]): {laterLow: number, drop: number} {
    let laterLow = 0, drop = 0;
    for (let index = positions.length - 1, lowest = Infinity; index >= 0; index--) {
        if (lowest < positions[index]!) {
            laterLow++;
            drop = Math.max(drop, positions[index]! - lowest);
        }
        lowest = Math.min(lowest, positions[index]!);
    }
    return {laterLow, drop};
}
