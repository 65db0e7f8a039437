CREATE TABLE "deadletter_tasks" (
	"id" text PRIMARY KEY NOT NULL,
	"activation" jsonb NOT NULL,
	"application" text NOT NULL,
	"namespace" text NOT NULL,
	"taskname" text NOT NULL,
	"reason" text NOT NULL,
	"processing_attempts" integer NOT NULL,
	"received_at" timestamp with time zone NOT NULL,
	"deadlettered_at" timestamp with time zone DEFAULT clock_timestamp() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "inflight_tasks" ADD COLUMN "failure_reason" text;--> statement-breakpoint
CREATE INDEX "deadletter_tasks_deadlettered_at_idx" ON "deadletter_tasks" USING btree ("deadlettered_at","id");--> statement-breakpoint
CREATE INDEX "deadletter_tasks_queue_idx" ON "deadletter_tasks" USING btree ("application","namespace","taskname");