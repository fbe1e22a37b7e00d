%% medsentry's per-client publish limit for the fleet broker cluster (RabbitMQ 3.10).
%%
%% The same contract as the Mosquitto plugin beside it (medsentry_ratelimit.c):
%% a token bucket per user (= certificate CN, the device id), RATE messages/s
%% after a burst of BURST; beyond it a message to amq.topic is dropped before any
%% queue sees it, and once a second each user that dropped more is reported on
%% the routing key medsentry.broker.shed (MQTT medsentry/broker/shed), JSON
%% {"client", "shed" (running total on this node since "boot", ms since the
%% epoch), "node", "rate", "burst"}, and in the log.
%%
%% How: RabbitMQ 3.10's MQTT plugin publishes through an AMQP 0-9-1 channel
%% process per connection, so a channel interceptor sees every MQTT PUBLISH
%% (and every AMQP basic.publish). Over the limit the interceptor sends the
%% message to the exchange medsentry.shed instead, which has no bindings: it is
%% routed nowhere and, as MQTT 3.1.1 has no refusal, a QoS 1 PUBLISH is still
%% PUBACKed (the broker confirms unroutable messages). The bucket is shared by all
%% of a user's connections on the node (an ETS table), so more connections do not
%% buy more rate; each node limits its own clients.
%%
%% It also names the publisher on every message it lets through to amq.topic: the
%% header x-medsentry-device = the user (for a device, its id: its topic permission
%% allows only its own topics). The collectors' consistent-hash exchange hashes on
%% it, so all of a device's records (telemetry, status) share one partition and
%% are stored in the order the device sent them. A header the client sent under
%% that name is replaced.
%%
%% Built by host_tools/broker/rabbit_plugin.py with erlc against the installed
%% RabbitMQ's headers; configured in advanced.config ({medsentry_ratelimit,
%% [{rate, R}, {burst, B}]}).
-module(medsentry_ratelimit).
-behaviour(rabbit_channel_interceptor).

-include_lib("rabbit_common/include/rabbit.hrl").
-include_lib("rabbit_common/include/rabbit_framing.hrl").

-export([description/0, init/1, intercept/3, applies_to/0]).
-export([boot/0, stop/0]).

-define(BUCKETS, medsentry_ratelimit_buckets).
-define(SHED, medsentry_ratelimit_shed).
-define(OWNER, medsentry_ratelimit_owner).
-define(LIMITED_EXCHANGE, <<"amq.topic">>).
-define(SHED_EXCHANGE, <<"medsentry.shed">>).
-define(REPORT_KEY, <<"medsentry.broker.shed">>).
-define(DEVICE_HEADER, <<"x-medsentry-device">>).

-rabbit_boot_step({medsentry_ratelimit,
                   [{description, "medsentry per-client publish limit"},
                    {mfa, {?MODULE, boot, []}},
                    {cleanup, {?MODULE, stop, []}},
                    {requires, rabbit_registry},
                    {enables, recovery}]}).

%% -- boot: the tables' owner first, then the interceptor ----------------------
boot() ->
    Self = self(),
    Pid = spawn(fun() -> owner_init(Self) end),
    receive {?OWNER, ready} -> ok after 10000 -> exit({medsentry_ratelimit, owner_not_ready, Pid}) end,
    rabbit_registry:register(channel_interceptor, <<"medsentry ratelimit">>, ?MODULE).

stop() ->
    rabbit_registry:unregister(channel_interceptor, <<"medsentry ratelimit">>),
    case whereis(?OWNER) of undefined -> ok; Pid -> Pid ! stop, ok end.

owner_init(Parent) ->
    register(?OWNER, self()),
    ets:new(?BUCKETS, [named_table, public, set, {write_concurrency, true}, {read_concurrency, true}]),
    ets:new(?SHED, [named_table, public, set, {write_concurrency, true}]),
    Parent ! {?OWNER, ready},
    owner_loop(erlang:system_time(millisecond), #{}).

%% The tables live as long as this process: it only reports and never exits on
%% a failed report.
owner_loop(Boot, Reported) ->
    receive
        stop -> ok
    after 1000 ->
        Reported1 = try report(Boot, Reported)
                    catch Class:Reason ->
                        rabbit_log:warning("medsentry_ratelimit: report failed: ~p:~p", [Class, Reason]),
                        Reported
                    end,
        owner_loop(Boot, Reported1)
    end.

report(Boot, Reported) ->
    {Rate, Burst} = limits(),
    ets:foldl(fun({User, Total}, Acc) ->
                      case maps:get(User, Acc, 0) of
                          Total -> Acc;
                          _ ->
                              rabbit_log:warning("medsentry_ratelimit: client ~ts over ~b msg/s "
                                                 "(burst ~b): ~b dropped so far", [User, Rate, Burst, Total]),
                              Body = rabbit_json:encode(#{<<"client">> => User, <<"shed">> => Total,
                                                          <<"node">> => atom_to_binary(node(), utf8),
                                                          <<"boot">> => Boot,
                                                          <<"rate">> => Rate, <<"burst">> => Burst}),
                              rabbit_basic:publish(rabbit_misc:r(<<"/">>, exchange, ?LIMITED_EXCHANGE),
                                                   ?REPORT_KEY, #'P_basic'{delivery_mode = 2}, Body),
                              maps:put(User, Total, Acc)
                      end
              end, Reported, ?SHED).

limits() ->
    {application:get_env(medsentry_ratelimit, rate, 500), application:get_env(medsentry_ratelimit, burst, 2000)}.

%% -- the interceptor ------------------------------------------------------------
description() ->
    [{description, <<"medsentry per-client publish limit (token bucket per user)">>}].

applies_to() ->
    ['basic.publish'].

%% The channel's user and the limits, read once per channel (not per message).
init(Ch) ->
    #user{username = User} = rabbit_channel:get_user(Ch),
    {Rate, Burst} = limits(),
    {User, Rate, Burst}.

intercept(#'basic.publish'{exchange = ?LIMITED_EXCHANGE} = Method, Content, {User, Rate, Burst}) ->
    case take(User, Rate, Burst) of
        true -> {Method, tag(Content, User)};
        false -> {Method#'basic.publish'{exchange = ?SHED_EXCHANGE}, Content}
    end;
intercept(Method, Content, _State) ->
    {Method, Content}.

tag(Content0, User) ->
    #content{properties = Props} = Content = rabbit_binary_parser:ensure_content_decoded(Content0),
    Headers = case Props#'P_basic'.headers of undefined -> []; H -> H end,
    Tagged = lists:keystore(?DEVICE_HEADER, 1, Headers, {?DEVICE_HEADER, longstr, User}),
    %% properties_bin = none: the changed properties are encoded again on delivery
    Content#content{properties = Props#'P_basic'{headers = Tagged}, properties_bin = none}.

%% Tokens are kept in thousandths of a message, so refilling stays integer:
%% (Now - Last) ms at Rate msg/s refill (Now - Last) * Rate thousandths.
take(User, Rate, Burst) ->
    Full = Burst * 1000,
    Now = erlang:monotonic_time(millisecond),
    {Tokens0, Last} = case ets:lookup(?BUCKETS, User) of
                          [{_, T, L}] -> {T, L};
                          [] -> {Full, Now}
                      end,
    Tokens = min(Full, Tokens0 + (Now - Last) * Rate),
    case Tokens >= 1000 of
        true ->
            ets:insert(?BUCKETS, {User, Tokens - 1000, Now}),
            true;
        false ->
            ets:insert(?BUCKETS, {User, Tokens, Now}),
            ets:update_counter(?SHED, User, 1, {User, 0}),
            false
    end.
