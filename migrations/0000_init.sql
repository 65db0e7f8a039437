CREATE TABLE "inflight_tasks" (
	"id" text PRIMARY KEY NOT NULL,
	"activation" jsonb NOT NULL,
	"added_at" timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
	"received_at" timestamp with time zone NOT NULL,
	"processing_attempts" integer DEFAULT 0 NOT NULL,
	"expires_at" timestamp with time zone,
	"delay_until" timestamp with time zone,
	"processing_deadline_duration" integer NOT NULL,
	"processing_deadline" timestamp with time zone,
	"claim_expires_at" timestamp with time zone,
	"status" text NOT NULL,
	"at_most_once" boolean DEFAULT false NOT NULL,
	"application" text NOT NULL,
	"namespace" text NOT NULL,
	"taskname" text NOT NULL,
	"on_attempts_exceeded" text DEFAULT 'discard' NOT NULL,
	"bucket" smallint DEFAULT 0 NOT NULL
);
--> statement-breakpoint
CREATE INDEX "inflight_tasks_pending_added_at_idx" ON "inflight_tasks" USING btree ("added_at") WHERE status = 'pending';--> statement-breakpoint
CREATE INDEX "inflight_tasks_pending_app_ns_added_at_idx" ON "inflight_tasks" USING btree ("application","namespace","added_at") WHERE status = 'pending';--> statement-breakpoint
CREATE INDEX "inflight_tasks_processing_deadline_idx" ON "inflight_tasks" USING btree ("processing_deadline") WHERE status = 'processing';--> statement-breakpoint
CREATE INDEX "inflight_tasks_status_idx" ON "inflight_tasks" USING btree ("status");