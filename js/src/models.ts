// The synced traits of each widget, as the front end sees them (one interface per Python class;
// anywidget's RenderProps<T> types model.get / model.set with them, so no `any` in the widgets).
// CuratorApp has no front end of its own: it is an ipywidgets layout of these four widgets.
import type { BBox } from "./region_logic";
import type { WireArray } from "./shared/arrays";
import type { TeamState } from "./labeler_logic";

interface Base {
  error: string;
  chunk_bytes: number;
}

export interface Thumbs {
  thumb_url: string;
  workspace_path: string;
}

export interface EmbeddingViewModel extends Base, Thumbs {
  xy: WireArray;
  color: WireArray | null;
  palette: string[];
  legend: Array<[string, string]>;
  legend_title: string;
  color_kind: "category" | "value";
  selection: WireArray;
  highlight: WireArray;
  ids: WireArray;
  point_size: number;
  mouse_mode: "panZoom" | "lasso";
  gestures: "auto" | "live" | "deferred";
  slow_frame_ms: number;
  height: string;
  search_run: string;
}

export interface SwipeLabelerModel extends Base, Thumbs {
  upcoming: number[];
  classes: string[];
  unsure: boolean;
  counts: Record<string, number>;
  remaining: number;
  done: number;
  /** the last label event Python wrote (read by notebooks; the view keeps its own queue) */
  last: Record<string, unknown>;
  acks: Record<string, number>;
  title: string;
  question: string;
  reference_ids: number[];
  notice: string;
  image_size: number;
  prefetch: number;
  autofocus: boolean;
  /** who labels in this view (team mode); empty for one person */
  annotator: string;
  /** the team's progress: per annotator counts, labelled and pending (labeler_logic.teamLine reads it) */
  team: TeamState;
}

export interface GalleryModel extends Base, Thumbs {
  ids: WireArray;
  scores: WireArray | null;
  captions: string[];
  selection: WireArray;
  title: string;
  thumb_size: number;
  height: string;
}

/** RegionPicker.progress: a download's state, as `download()` reports it. */
export interface DownloadProgress {
  state: "idle" | "running" | "done" | "error";
  done?: number;
  total?: number;
  message?: string;
  added?: number;
  existing?: number;
}

export interface RegionPickerModel extends Base, Thumbs {
  bbox: BBox | null;
  layer: string;
  date: string;
  source: "bluemarble" | "gibs";
  tile_matrix_set: string;
  time_range: [string, string] | null;
  max_zoom: number;
  attribution: string;
  chip_size: number;
  level: number;
  max_level: number;
  grid: BBox[];
  grid_count: number;
  progress: DownloadProgress;
  can_download: boolean;
  height: string;
}
