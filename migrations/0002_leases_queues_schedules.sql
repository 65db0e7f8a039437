CREATE TABLE "queue_settings" (
	"application" text NOT NULL,
	"namespace" text DEFAULT '' NOT NULL,
	"paused" boolean DEFAULT false NOT NULL,
	"max_processing" integer,
	"rate_per_sec" double precision,
	"rate_burst" integer,
	"rate_tokens" double precision,
	"rate_updated_at" timestamp with time zone,
	"updated_at" timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
	CONSTRAINT "queue_settings_application_namespace_pk" PRIMARY KEY("application","namespace")
);
--> statement-breakpoint
CREATE TABLE "schedules" (
	"name" text PRIMARY KEY NOT NULL,
	"source" text DEFAULT 'api' NOT NULL,
	"cron" text,
	"every_sec" integer,
	"timezone" text DEFAULT 'UTC' NOT NULL,
	"task" jsonb NOT NULL,
	"overlap" text DEFAULT 'allow' NOT NULL,
	"catch_up" text DEFAULT 'none' NOT NULL,
	"paused" boolean DEFAULT false NOT NULL,
	"next_fire_at" timestamp with time zone,
	"last_fire_at" timestamp with time zone,
	"last_task_id" text,
	"created_at" timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT clock_timestamp() NOT NULL
);
--> statement-breakpoint
DROP INDEX "inflight_tasks_pending_added_at_idx";--> statement-breakpoint
DROP INDEX "inflight_tasks_pending_app_ns_added_at_idx";--> statement-breakpoint
ALTER TABLE "inflight_tasks" ADD COLUMN "priority" smallint DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "inflight_tasks" ADD COLUMN "lease" uuid;--> statement-breakpoint
ALTER TABLE "inflight_tasks" ADD COLUMN "progress" jsonb;--> statement-breakpoint
ALTER TABLE "inflight_tasks" ADD COLUMN "cancel_requested" boolean DEFAULT false NOT NULL;--> statement-breakpoint
CREATE INDEX "schedules_next_fire_at_idx" ON "schedules" USING btree ("next_fire_at") WHERE not paused;--> statement-breakpoint
CREATE INDEX "inflight_tasks_pending_order_idx" ON "inflight_tasks" USING btree ("priority" DESC NULLS LAST,"added_at") WHERE status = 'pending';--> statement-breakpoint
CREATE INDEX "inflight_tasks_pending_app_order_idx" ON "inflight_tasks" USING btree ("application","priority" DESC NULLS LAST,"added_at") WHERE status = 'pending';--> statement-breakpoint
CREATE INDEX "inflight_tasks_pending_app_ns_order_idx" ON "inflight_tasks" USING btree ("application","namespace","priority" DESC NULLS LAST,"added_at") WHERE status = 'pending';