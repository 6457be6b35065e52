export default function Workflow() {
  return <p className="muted">The workflow editor is coming.</p>;
}
