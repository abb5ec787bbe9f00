import {useApp} from "../../store/index.js";
import {formatMs} from "../format.js";

const width = 640;
const height = 220;
const pad = {left: 56, right: 12, top: 12, bottom: 28};

/** Bars: each answer's time to first token; ticks: what a full prefill of its prompt would have taken (estimate). */
export function TtftChart() {
    const turns = useApp((state) => state.turns);
    const points = turns.filter((turn) => turn.stats !== null).map((turn, index) => ({
        n: index + 1, ttft: turn.stats!.ttftMs, full: turn.stats!.fullPrefillEstimateMs, strategy: turn.stats!.strategy
    }));

    if (points.length === 0)
        return (
            <figure className="ttft-chart">
                <figcaption>Time to first token per answer</figcaption>
                <p className="chart-empty">Ask a question: each answer of this conversation appears here.</p>
            </figure>
        );

    const max = Math.max(1, ...points.flatMap((point) => [point.ttft, point.full]));
    const plotWidth = width - pad.left - pad.right;
    const plotHeight = height - pad.top - pad.bottom;
    const slot = plotWidth / points.length;
    const barWidth = Math.max(4, Math.min(36, slot * 0.6));
    const y = (ms: number) => pad.top + plotHeight - (ms / max) * plotHeight;

    return (
        <figure className="ttft-chart">
            <figcaption>Time to first token per answer in this conversation, against the full-prefill estimate</figcaption>
            <svg viewBox={`0 0 ${width} ${height}`} role="img" aria-label={`Time to first token of ${points.length} answers`}>
                {[0, 0.5, 1].map((fraction) => (
                    <g key={fraction}>
                        <line x1={pad.left} x2={width - pad.right} y1={y(max * fraction)} y2={y(max * fraction)} className="chart-grid" />
                        <text x={pad.left - 6} y={y(max * fraction) + 4} textAnchor="end" className="chart-label">{formatMs(max * fraction)}</text>
                    </g>
                ))}
                {points.map((point, index) => {
                    const x = pad.left + slot * index + (slot - barWidth) / 2;
                    return (
                        <g key={point.n} data-answer={point.n}>
                            <title>{`Answer ${point.n} (${point.strategy}): first token ${formatMs(point.ttft)}, full prefill ≈ ${formatMs(point.full)}`}</title>
                            <rect x={x} y={y(point.ttft)} width={barWidth} height={Math.max(1, y(0) - y(point.ttft))} className="chart-bar" />
                            <line x1={x - 3} x2={x + barWidth + 3} y1={y(point.full)} y2={y(point.full)} className="chart-full" />
                            <text x={x + barWidth / 2} y={height - 10} textAnchor="middle" className="chart-label">{point.n}</text>
                        </g>
                    );
                })}
            </svg>
            <p className="chart-legend"><span className="legend-bar" /> first token <span className="legend-full" /> full prefill (est.)</p>
        </figure>
    );
}
