-- One row per incident as the metrics count it: team as of creation, times to acknowledge and resolve, flags.
-- Re-triggers of one problem (same service and incident_key, created within 24 hours of the previous resolve) are folded into one incident: first trigger to final resolve.
-- Merged-away incidents keep a row with is_merged = true and are excluded from every metric; open incidents are kept (censored), never dropped.
-- source: the paging source of the incident
-- incident_id: the source's id of the (first) incident
-- team_key: the team owning the service on the UTC day the incident was created (dated ownership); null when the service has no owner in the ownership file
-- service_id: the source's service id (a service is (source, service_id))
-- urgency: high or low
-- priority: P1..P5, or null when unset
-- created_at: trigger time (UTC)
-- acknowledged_at: first acknowledgement (UTC); null when never acknowledged
-- resolved_at: final resolve (UTC); null while open
-- seconds_to_acknowledge: acknowledged_at minus created_at, in seconds
-- seconds_to_resolve: resolved_at minus created_at, in seconds (triggered to resolved); null while open
-- seconds_open_so_far: for open incidents, data_as_of minus created_at (a censored duration); null when resolved
-- is_open: not resolved as of the last sync (censored, not dropped)
-- is_merged: merged into another incident; excluded from metrics
-- is_auto_resolved: resolved by a timeout or automatically, not by a person
-- is_after_hours: created outside the owning team's business hours, in the team's time zone
-- handoffs: assignments, reassignments and escalations after the first assignment
-- n_retriggers: later incidents folded into this one (same key, within 24 hours of the previous resolve)
-- linked_deployment_id: the latest successful production deployment of a repo of this service in the 24 hours before the incident; null when none
-- linked_deployment_source: the git source of that deployment (a deployment is (source, deployment_id)); null when none
-- data_as_of: the newest record time seen in the paging data (the censoring time for open incidents)
with incidents as (
    select * from intermediate.int_incidents
),

events as (
    select * from intermediate.int_incident_events
),

data_as_of as (
    select greatest(
        (select max(created_at) from incidents),
        (select max(occurred_at) from events),
        (select max(resolved_at) from incidents)
    ) as data_as_of
),

event_facts as (
    -- per incident, in one pass over its events: the first acknowledgement, the last resolve and
    -- whether it was automatic, and the handoffs (every assignment after the first: one fewer than
    -- its assigned, reassigned and escalated events)
    select
        source,
        incident_id,
        min(occurred_at) filter (where event_type = 'acknowledged') as acknowledged_at,
        max(occurred_at) filter (where event_type = 'resolved') as resolve_logged_at,
        arg_max(is_automatic, occurred_at) filter (where event_type = 'resolved') as resolve_is_automatic,
        nullif(count(*) filter (where event_type in ('assigned', 'reassigned', 'escalated')), 0) - 1 as handoffs
    from events
    group by source, incident_id
),

enriched as (
    select
        i.source,
        i.incident_id,
        i.incident_key,
        i.service_id,
        i.urgency,
        i.priority,
        i.status,
        i.created_at,
        e.acknowledged_at,
        -- A resolved event also counts: an old open incident's record may be stale while the events are not.
        coalesce(case when i.status = 'resolved' then i.resolved_at end, e.resolve_logged_at) as resolved_at,
        coalesce(e.resolve_is_automatic, false) as is_auto_resolved,
        i.is_merged,
        coalesce(e.handoffs, 0) as handoffs
    from incidents as i
    left join event_facts as e on e.source = i.source and e.incident_id = i.incident_id
),

shared_keys as (
    -- (service, incident_key) pairs of more than one incident: only their incidents can fold
    select source, service_id, incident_key
    from enriched
    where not is_merged and incident_key is not null
    group by source, service_id, incident_key
    having count(*) > 1
),

chained as (
    select
        e.*,
        lag(e.resolved_at) over (
            partition by e.source, e.service_id, e.incident_key order by e.created_at, e.incident_id
        ) as previous_resolved_at
    from enriched as e
    semi join shared_keys as k
        on k.source = e.source and k.service_id is not distinct from e.service_id and k.incident_key = e.incident_key
    where not e.is_merged
),

numbered as (
    select
        *,
        sum(
            case
                when incident_key is null
                    or previous_resolved_at is null
                    or created_at > previous_resolved_at + interval 24 hour
                    then 1
                else 0
            end
        ) over (
            partition by source, service_id, incident_key
            order by created_at, source, incident_id
            rows between unbounded preceding and current row
        ) as chain_no
    from chained
),

folded as (
    select
        source,
        arg_min(incident_id, created_at) as incident_id,
        service_id,
        arg_min(urgency, created_at) as urgency,
        arg_min_null(priority, created_at) as priority,
        min(created_at) as created_at,
        min(acknowledged_at) as acknowledged_at,
        arg_max_null(resolved_at, created_at) as resolved_at,
        arg_max(is_auto_resolved, created_at) as is_auto_resolved,
        false as is_merged,
        sum(handoffs) as handoffs,
        count(*) - 1 as n_retriggers
    from numbered
    group by source, service_id, incident_key, chain_no
),

unfolded as (
    -- an incident whose key no other incident shares (or that has no key) is its own chain: the
    -- aggregates of folded over that one row (arg_min and friends give null without a created_at)
    select
        e.source,
        case when e.created_at is not null then e.incident_id end as incident_id,
        e.service_id,
        case when e.created_at is not null then e.urgency end as urgency,
        case when e.created_at is not null then e.priority end as priority,
        e.created_at,
        e.acknowledged_at,
        case when e.created_at is not null then e.resolved_at end as resolved_at,
        case when e.created_at is not null then e.is_auto_resolved end as is_auto_resolved,
        false as is_merged,
        cast(e.handoffs as hugeint) as handoffs,
        cast(0 as bigint) as n_retriggers
    from enriched as e
    anti join shared_keys as k
        on k.source = e.source and k.service_id is not distinct from e.service_id and k.incident_key = e.incident_key
    where not e.is_merged
),

merged as (
    select
        source, incident_id, service_id, urgency, priority, created_at, acknowledged_at, resolved_at,
        is_auto_resolved, is_merged, handoffs, 0 as n_retriggers
    from enriched
    where is_merged
),

all_incidents as (
    select * from folded
    union all
    select * from unfolded
    union all
    select * from merged
),

owned as (
    select
        f.*,
        o.team_key
    from all_incidents as f
    left join staging.stg_ownership__service_owners as o
        on o.source = f.source
        and o.service_id = f.service_id
        and cast(f.created_at as date) >= o.valid_from
        and cast(f.created_at as date) < o.valid_to
),

deployments as (
    select
        d.source as repo_source,
        d.deployment_id,
        r.source,
        r.service_id,
        min(d.succeeded_at) as deployed_at
    from intermediate.int_deployments as d
    inner join staging.stg_ownership__service_repos as r on r.repo_source = d.source and r.repo = d.repo
    where d.is_production
        and d.succeeded_at is not null
    group by d.source, d.deployment_id, r.source, r.service_id
),

deployment_days as (
    -- each deployment under the UTC day it succeeded and the next: an incident in the 24 hours
    -- after it was created on one of the two (an equality join, not every deployment of the service)
    select d.source, d.service_id, d.repo_source, d.deployment_id, d.deployed_at, cast(d.deployed_at as date) + t.offset_days as day
    from deployments as d
    cross join (values (0), (1)) as t(offset_days)
    where d.deployed_at is not null
),

linked as (
    -- the latest of them (of several in the same second, the last by id)
    select
        o.source,
        o.incident_id,
        first(d.deployment_id order by d.deployed_at desc, d.deployment_id desc) as linked_deployment_id,
        first(d.repo_source order by d.deployed_at desc, d.deployment_id desc) as linked_deployment_source
    from owned as o
    inner join deployment_days as d
        on d.source = o.source
        and d.service_id = o.service_id
        and d.day = cast(o.created_at as date)
        and d.deployed_at <= o.created_at
        and d.deployed_at > o.created_at - interval 24 hour
    group by o.source, o.incident_id
),

final as (
    select
        o.source,
        o.incident_id,
        o.team_key,
        o.service_id,
        o.urgency,
        o.priority,
        o.created_at,
        o.acknowledged_at,
        o.resolved_at,
        epoch(o.acknowledged_at) - epoch(o.created_at) as seconds_to_acknowledge,
        epoch(o.resolved_at) - epoch(o.created_at) as seconds_to_resolve,
        case
            when o.resolved_at is null and not o.is_merged
                then epoch(a.data_as_of) - epoch(o.created_at)
        end as seconds_open_so_far,
        o.resolved_at is null and not o.is_merged as is_open,
        o.is_merged,
        o.is_auto_resolved,
        case
            when t.team_key is null then null
            else not (
                list_contains(t.business_isodows, isodow(timezone(t.time_zone, o.created_at)))
                and cast(timezone(t.time_zone, o.created_at) as time) >= t.business_hours_start
                and cast(timezone(t.time_zone, o.created_at) as time) < t.business_hours_end
            )
        end as is_after_hours,
        o.handoffs,
        o.n_retriggers,
        l.linked_deployment_id,
        l.linked_deployment_source,
        a.data_as_of
    from owned as o
    cross join data_as_of as a
    left join staging.stg_ownership__teams as t on t.team_key = o.team_key
    left join linked as l on l.source = o.source and l.incident_id = o.incident_id
)

select * from final
order by created_at, source, incident_id
