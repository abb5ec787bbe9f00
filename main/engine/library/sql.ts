/** A SQL string literal for LanceDB filters: paths may contain quotes. */
export function sqlString(value: string): string {
    return `'${value.replaceAll("'", "''")}'`;
}

export function sqlIn(column: string, values: readonly string[]): string {
    return `${column} IN (${values.map(sqlString).join(", ")})`;
}
