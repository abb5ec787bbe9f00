/** The whole page when `weft serve` refused (or was never given) this page's token. */
export function NotAuthorized({reason}: {reason: string}) {
    return (
        <div className="not-authorized" role="alert" data-testid="not-authorized">
            <img src="assets/icon.png" alt="" width={48} height={48} />
            <h1>Not authorized — open the URL printed by weft serve</h1>
            <p>{reason}</p>
            <p>
                When it starts, <code>weft serve</code> prints a link like <code>http://127.0.0.1:PORT/#token=…</code>.
                Open that exact link: its token is new on every run.
            </p>
        </div>
    );
}
