using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Core.Features;

namespace IoMux.Tests.AspNetCore;

/// <summary>Restated from aspnetcore's FunctionalTests KeepAliveTimeoutTests, RequestHeadersTimeoutTests and
/// RequestBodyTimeoutTests: Kestrel's timeouts end connections through the transport. As there, the behaviours of one
/// Kestrel test run concurrently on one server (their delays overlap), with Kestrel's 10 s / 30 s scaled to 2 s / 3 s.</summary>
public sealed partial class KestrelFunctionalTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(2);
    private static readonly TimeSpan LongDelay = TimeSpan.FromSeconds(3);
    private static readonly TimeSpan ShortDelay = TimeSpan.FromMilliseconds(500);

    private async Task<FunctionalHost> TimeoutsAsync()
    {
        _timeouts ??= await FunctionalHost.StartAsync(target, (host, o) =>
        {
            o.Limits.KeepAliveTimeout = Timeout;
            o.Limits.RequestHeadersTimeout = Timeout;
            o.Limits.MinRequestBodyDataRate = null;
            host.Listen(o, "http", IPAddress.Loopback);
        });
        _timeouts.ClearLogs();
        return _timeouts;
    }

    /// <summary>KeepAliveTimeoutTests.App, with RequestHeadersTimeoutTests' one-byte read at /read1.</summary>
    private static async Task TimeoutApp(HttpContext ctx, CancellationToken longRunning, CancellationToken upgrade)
    {
        var output = ctx.Response.Body;
        switch (ctx.Request.Path.Value)
        {
            case "/longrunning":
                await Task.Delay(System.Threading.Timeout.Infinite, longRunning).ContinueWith(_ => { });
                break;
            case "/upgrade":
            {
                var stream = await ctx.Features.Get<IHttpUpgradeFeature>()!.UpgradeAsync();
                await Task.Delay(System.Threading.Timeout.Infinite, upgrade).ContinueWith(_ => { });
                output = stream;
                break;
            }
            case "/consume":
                await ctx.Request.Body.CopyToAsync(Stream.Null);
                break;
            case "/read1":
                await ctx.Request.Body.ReadAtLeastAsync(new byte[1], 1, throwOnEndOfStream: false);
                break;
        }
        await output.WriteAsync("hello, world"u8.ToArray());
        await output.FlushAsync();
    }

    /// <summary>KeepAliveTimeoutTests.ReceiveResponse: a chunked "hello, world".</summary>
    private const string ChunkedHello = "c\r\nhello, world\r\n0\r\n\r\n";

    /// <summary>TestConnection's 408 with "Connection: close" and an empty body (header order aside: Kestrel's has changed).</summary>
    private static readonly NUnit.Framework.Constraints.Constraint Is408 = Does.StartWith("HTTP/1.1 408 Request Timeout\r\n")
        .And.Contain("\r\nConnection: close\r\n").And.Contain("\r\nContent-Length: 0\r\n").And.EndWith("\r\n\r\n");

    private static async Task Behaviour(string name, Func<Task> run)
    {
        try
        {
            await run();
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            throw new AssertionException($"{name}: {e.Message}", e);
        }
    }

    [Test, CancelAfter(60_000), Description("KeepAliveTimeoutTests.TestKeepAliveTimeout: ConnectionClosedWhenKeepAliveTimeoutExpires, " +
        "ConnectionKeptAliveBetweenRequests, ConnectionNotTimedOutWhileRequestBeingSent, ConnectionNotTimedOutWhileAppIsRunning, " +
        "ConnectionTimesOutWhenOpenedButNoRequestSent, KeepAliveTimeoutDoesNotApplyToUpgradedConnections")]
    public async Task TheKeepAliveTimeoutEndsIdleConnectionsOnly(CancellationToken token)
    {
        var host = await TimeoutsAsync();
        using var longRunning = new CancellationTokenSource();
        using var upgrade = new CancellationTokenSource();
        host.Handler = ctx => TimeoutApp(ctx, longRunning.Token, upgrade.Token);
        int port = host.Port();
        await Task.WhenAll(
            Behaviour("ConnectionClosedWhenKeepAliveTimeoutExpires", async () =>
            {
                using var client = await RawClient.ConnectAsync(port, token);
                await client.SendAsync(token, EmptyGet);
                await client.ReceiveAsync(ChunkedHello, token);
                Assert.That(await client.ReadToEndAsync(token), Is.EqualTo("FIN"));
            }),
            Behaviour("ConnectionKeptAliveBetweenRequests", async () =>
            {
                using var client = await RawClient.ConnectAsync(port, token);
                for (int i = 0; i < 6; i++) // 3 s of requests, each within the 2 s timeout of the last
                {
                    await client.SendAsync(token, EmptyGet);
                    await Task.Delay(ShortDelay, token);
                }
                await client.ReceiveAsync(ChunkedHello, 6, token);
            }),
            Behaviour("ConnectionNotTimedOutWhileRequestBeingSent", async () =>
            {
                using var client = await RawClient.ConnectAsync(port, token);
                await client.SendAsync(token, "POST /consume HTTP/1.1", "Host:", "Transfer-Encoding: chunked", "", "");
                for (var sending = System.Diagnostics.Stopwatch.StartNew(); sending.Elapsed < LongDelay;)
                {
                    await client.SendAsync(token, "1", "a", "");
                    await Task.Delay(ShortDelay, token);
                }
                await client.SendAsync(token, "0", "", "");
                await client.ReceiveAsync(ChunkedHello, token);
            }),
            Behaviour("ConnectionNotTimedOutWhileAppIsRunning", async () =>
            {
                using var client = await RawClient.ConnectAsync(port, token);
                await client.SendAsync(token, "GET /longrunning HTTP/1.1", "Host:", "", "");
                longRunning.CancelAfter(LongDelay);
                await client.ReceiveAsync(ChunkedHello, token);
                await client.SendAsync(token, EmptyGet);
                await client.ReceiveAsync(ChunkedHello, 2, token);
            }),
            Behaviour("ConnectionTimesOutWhenOpenedButNoRequestSent", async () =>
            {
                using var client = await RawClient.ConnectAsync(port, token);
                Assert.That(await client.ReadToEndAsync(token), Is.EqualTo("FIN"));
                Assert.That(client.Received, Is.Empty);
            }),
            Behaviour("KeepAliveTimeoutDoesNotApplyToUpgradedConnections", async () =>
            {
                using var client = await RawClient.ConnectAsync(port, token);
                await client.SendAsync(token, "GET /upgrade HTTP/1.1", "Host:", "Connection: Upgrade", "", "");
                await client.ReceiveAsync("HTTP/1.1 101 Switching Protocols", token);
                upgrade.CancelAfter(LongDelay);
                await client.ReceiveAsync("hello, world", token);
            }));
    }

    [Test, CancelAfter(60_000), Description("RequestHeadersTimeoutTests.TestRequestHeadersTimeout: ConnectionAbortedWhenRequestHeadersNotReceivedInTime, " +
        "RequestHeadersTimeoutCanceledAfterHeadersReceived, ConnectionAbortedWhenRequestLineNotReceivedInTime, TimeoutNotResetOnEachRequestLineCharacterReceived")]
    public async Task TheRequestHeadersTimeoutEndsSlowRequestHeadersWith408(CancellationToken token)
    {
        var host = await TimeoutsAsync();
        host.Handler = ctx => TimeoutApp(ctx, CancellationToken.None, CancellationToken.None);
        int port = host.Port();

        async Task Timeout408(string send)
        {
            using var client = await RawClient.ConnectAsync(port, token);
            await client.SendAsync(token, send);
            var end = await client.ReadToEndAsync(token);
            Assert.That(client.Received, Is408);
            Assert.That(end, Is.EqualTo("FIN"));
        }

        await Task.WhenAll(
            Behaviour("ConnectionAbortedWhenRequestHeadersNotReceivedInTime (no blank line)", () => Timeout408("GET / HTTP/1.1\r\nHost:\r\n")),
            Behaviour("ConnectionAbortedWhenRequestHeadersNotReceivedInTime (Content-Length)", () => Timeout408("GET / HTTP/1.1\r\nHost:\r\nContent-Length: 1\r\n")),
            Behaviour("ConnectionAbortedWhenRequestHeadersNotReceivedInTime (half a blank line)", () => Timeout408("GET / HTTP/1.1\r\nHost:\r\nContent-Length: 1\r\n\r")),
            Behaviour("ConnectionAbortedWhenRequestLineNotReceivedInTime (P)", () => Timeout408("P")),
            Behaviour("ConnectionAbortedWhenRequestLineNotReceivedInTime (line without LF)", () => Timeout408("POST / HTTP/1.1\r")),
            Behaviour("RequestHeadersTimeoutCanceledAfterHeadersReceived", async () =>
            {
                using var client = await RawClient.ConnectAsync(port, token);
                await client.SendAsync(token, "POST /read1 HTTP/1.1", "Host:", "Content-Length: 1", "", "");
                await Task.Delay(Timeout + ShortDelay, token);
                await client.SendAsync(token, "a");
                await client.ReceiveAsync(ChunkedHello, token);
                Assert.That(client.Received, Does.StartWith("HTTP/1.1 200 OK"));
            }),
            Behaviour("TimeoutNotResetOnEachRequestLineCharacterReceived", async () =>
            {
                using var client = await RawClient.ConnectAsync(port, token);
                var ended = client.ReadToEndAsync(token, 20);
                const string request = "POST / HTTP/1.1\r\nHost:\r\n\r\n";
                int sent = 0;
                foreach (char c in request)
                {
                    if (ended.IsCompleted)
                        break;
                    try
                    {
                        await client.SendAsync(token, c.ToString());
                    }
                    catch (SocketException)
                    {
                        break; // the server is gone: what Kestrel's test expects (an IOException on send)
                    }
                    sent++;
                    await Task.Delay(ShortDelay / 2, token);
                }
                await ended;
                Assert.That(sent, Is.LessThan(request.Length), "the connection ended before the slow request line was done");
                Assert.That(client.Received, Does.StartWith("HTTP/1.1 408 Request Timeout"));
            }));
    }

    [Test, CancelAfter(60_000), Description("RequestBodyTimeoutTests.RequestTimesOutWhenRequestBodyNotReceivedAtSpecifiedMinimumRate and " +
        "RequestBodyTimeoutTests.ConnectionClosedEvenIfAppSwallowsException (concurrently)")]
    public async Task ABodyBelowTheMinimumRateTimesOutWith408EvenIfTheAppSwallowsIt(CancellationToken token)
    {
        var swallowed = Signal<Exception?>();
        _host.Handler = async ctx =>
        {
            ctx.Features.Get<IHttpMinRequestBodyDataRateFeature>()!.MinDataRate = new MinDataRate(bytesPerSecond: 1, gracePeriod: TimeSpan.FromSeconds(2));
            var read = ctx.Request.Body.ReadAsync(new byte[1]).AsTask();
            if (ctx.Request.Path == "/swallow")
            {
                try
                {
                    await read.WaitAsync(TimeSpan.FromSeconds(20));
                    swallowed.TrySetResult(new Exception("the read completed"));
                }
                catch (Microsoft.AspNetCore.Http.BadHttpRequestException e) when (e.StatusCode == 408)
                {
                    swallowed.TrySetResult(null);
                }
                catch (Exception e)
                {
                    swallowed.TrySetResult(e);
                }
                ctx.Response.ContentLength = 12;
                await ctx.Response.WriteAsync("hello, world");
                return;
            }
            await read;
        };
        int port = _host.Port();
        await Task.WhenAll(
            Behaviour("RequestTimesOutWhenRequestBodyNotReceivedAtSpecifiedMinimumRate", async () =>
            {
                using var client = await RawClient.ConnectAsync(port, token);
                await client.SendAsync(token, "POST / HTTP/1.1", "Host:", "Content-Length: 1", "", "");
                await client.ReadToEndAsync(token, 20);
                Assert.That(client.Received, Is408);
            }),
            Behaviour("ConnectionClosedEvenIfAppSwallowsException", async () =>
            {
                using var client = await RawClient.ConnectAsync(port, token);
                await client.SendAsync(token, "POST /swallow HTTP/1.1", "Host:", "Content-Length: 1", "", "");
                await client.ReadToEndAsync(token, 20);
                Assert.That(await Within(swallowed.Task, token), Is.Null, "the app caught the 408");
                Assert.That(client.Received, Does.StartWith("HTTP/1.1 200 OK\r\n").And.Contain("Content-Length: 12").And.EndWith("hello, world"));
            }));
    }
}
