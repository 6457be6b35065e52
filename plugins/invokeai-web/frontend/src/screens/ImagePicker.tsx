/** Choosing an image: one of the gallery's latest images, or a file uploaded through the images API
 * (the workflow editor's image inputs and the Generate screen's control image). */
import { useState, type ChangeEvent } from "react";
import { api, thumbUrl, type ImageRecord } from "../lib/api";
import { errorText, useStore } from "../store";

export function ImagePicker({
  value,
  onChange,
  label = "Image",
  className = "",
  testId,
}: {
  value: unknown;
  onChange: (v: { image_name: string } | undefined) => void;
  label?: string;
  className?: string;
  testId?: string;
}) {
  const { notify } = useStore();
  const [options, setOptions] = useState<ImageRecord[] | null>(null);
  const name = (value as { image_name?: string } | undefined)?.image_name ?? "";
  const load = () => {
    if (options === null) api.images(0, 50, false).then((p) => setOptions(p.items)).catch((e) => notify(errorText(e), "error"));
  };
  const upload = async (e: ChangeEvent<HTMLInputElement>) => {
    const f = e.target.files?.[0];
    e.target.value = "";
    if (!f) return;
    try {
      const rec = await api.upload(f);
      onChange({ image_name: rec.image_name });
      setOptions(null);
    } catch (err) {
      notify(errorText(err), "error");
    }
  };
  return (
    <div className={`image-picker ${className}`.trim()} data-testid={testId}>
      {name && <img src={thumbUrl(name)} alt="" width={48} height={48} />}
      <select
        value={name}
        onFocus={load}
        onMouseDown={load}
        onChange={(e) => onChange(e.target.value ? { image_name: e.target.value } : undefined)}
        aria-label={label}
      >
        <option value="">{name ? name : "choose an image…"}</option>
        {options
          ?.filter((o) => o.image_name !== name)
          .map((o) => (
            <option key={o.image_name} value={o.image_name}>
              {o.image_name}
            </option>
          ))}
      </select>
      <label className="button small">
        Upload
        <input type="file" accept="image/png,image/jpeg,image/webp" hidden onChange={upload} aria-label={`Upload ${label.toLowerCase()}`} />
      </label>
    </div>
  );
}
