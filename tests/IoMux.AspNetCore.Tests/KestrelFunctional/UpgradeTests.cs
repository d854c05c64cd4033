using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;

namespace IoMux.Tests.AspNetCore;

/// <summary>Restated from aspnetcore's FunctionalTests/UpgradeTests.cs: an upgraded connection is the transport's
/// pipes handed to the app as a stream.</summary>
public sealed partial class KestrelFunctionalTests
{
    /// <summary>TestConnection.SendEmptyGetWithUpgrade.</summary>
    private static readonly string[] GetWithUpgrade = ["GET / HTTP/1.1", "Host:", "Connection: Upgrade", "", ""];

    [Test, CancelAfter(30_000), Description("UpgradeTests.ResponseThrowsAfterUpgrade")]
    public async Task AfterAnUpgradeTheResponseBodyThrowsAndTheStreamCarriesData(CancellationToken token)
    {
        var done = Signal<Exception?>();
        _host.Handler = async ctx =>
        {
            try
            {
                var stream = await ctx.Features.Get<IHttpUpgradeFeature>()!.UpgradeAsync();
                Exception? thrown = null;
                try
                {
                    await ctx.Response.Body.WriteAsync(new byte[1]);
                }
                catch (InvalidOperationException e)
                {
                    thrown = e;
                }
                await using (var writer = new StreamWriter(stream))
                {
                    await writer.WriteLineAsync("New protocol data");
                    await writer.FlushAsync();
                }
                done.TrySetResult(thrown is null ? new Exception("the response body took a write after the upgrade") : null);
            }
            catch (Exception e)
            {
                done.TrySetResult(e);
            }
        };
        using var client = await RawClient.ConnectAsync(_host.Port(), token);
        await client.SendAsync(token, GetWithUpgrade);
        await client.ReceiveAsync("HTTP/1.1 101 Switching Protocols", token);
        await client.ReceiveAsync("New protocol data", token);
        Assert.That(await Within(done.Task, token), Is.Null);
    }

    [Test, CancelAfter(30_000), Description("UpgradeTests.RequestBodyAlwaysEmptyAfterUpgrade")]
    public async Task AfterAnUpgradeTheRequestBodyIsEmptyAndTheStreamIsTwoWay(CancellationToken token)
    {
        var done = Signal<Exception?>();
        _host.Handler = async ctx =>
        {
            try
            {
                var stream = await ctx.Features.Get<IHttpUpgradeFeature>()!.UpgradeAsync();
                int read = await ctx.Request.Body.ReadAsync(new byte[128]).AsTask().WaitAsync(TimeSpan.FromSeconds(10));
                using var reader = new StreamReader(stream);
                await using var writer = new StreamWriter(stream);
                var line = await reader.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(10));
                await writer.WriteLineAsync("Custom protocol recv");
                await writer.FlushAsync();
                done.TrySetResult(read == 0 && line == "Custom protocol send" ? null : new Exception($"body read {read}, line \"{line}\""));
            }
            catch (Exception e)
            {
                done.TrySetResult(e);
            }
        };
        using var client = await RawClient.ConnectAsync(_host.Port(), token);
        await client.SendAsync(token, GetWithUpgrade);
        await client.ReceiveAsync("HTTP/1.1 101 Switching Protocols", token);
        await client.SendAsync(token, "Custom protocol send\r\n");
        await client.ReceiveAsync("Custom protocol recv", token);
        Assert.That(await Within(done.Task, token), Is.Null);
    }

    [Test, CancelAfter(30_000), Description("UpgradeTests.UpgradeCannotBeCalledMultipleTimes")]
    public async Task ASecondUpgradeThrowsAndTheConnectionCloses(CancellationToken token)
    {
        var second = Signal<Exception?>();
        _host.Handler = async ctx =>
        {
            var feature = ctx.Features.Get<IHttpUpgradeFeature>()!;
            await feature.UpgradeAsync();
            try
            {
                await feature.UpgradeAsync();
                second.TrySetResult(null);
            }
            catch (Exception e)
            {
                second.TrySetResult(e);
                throw;
            }
        };
        using var client = await RawClient.ConnectAsync(_host.Port(), token);
        await client.SendAsync(token, GetWithUpgrade);
        await client.ReceiveAsync("HTTP/1.1 101 Switching Protocols", token);
        Assert.That(await Within(second.Task, token), Is.InstanceOf<InvalidOperationException>());
        Assert.That(await client.ReadToEndAsync(token), Is.AnyOf("FIN", "RST"), "the connection closes");
    }

    [Test, CancelAfter(30_000), Description("UpgradeTests.AcceptsRequestWithContentLengthAndUpgrade")]
    public async Task ARequestWithABodyAndConnectionUpgradeIsNotUpgradable(CancellationToken token)
    {
        var seen = Signal<string>();
        _host.Handler = async ctx =>
        {
            var feature = ctx.Features.Get<IHttpUpgradeFeature>()!;
            int read = await ctx.Request.Body.ReadAsync(new byte[10]);
            seen.TrySetResult($"upgradable={feature.IsUpgradableRequest} length={ctx.Request.ContentLength} read={read}");
        };
        using var client = await RawClient.ConnectAsync(_host.Port(), token);
        await client.SendAsync(token, "POST / HTTP/1.1", "Host:", "Content-Length: 1", "Connection: Upgrade", "", "A");
        await client.ReceiveAsync("HTTP/1.1 200 OK", token);
        Assert.That(await Within(seen.Task, token), Is.EqualTo("upgradable=False length=1 read=1"));
    }

    [Test, CancelAfter(30_000), Description("UpgradeTests.AcceptsRequestWithNoContentLengthAndUpgrade")]
    public async Task ARequestWithoutABodyAndConnectionUpgradeIsUpgradable(CancellationToken token)
    {
        var seen = new System.Collections.Concurrent.ConcurrentQueue<string>();
        _host.Handler = async ctx =>
        {
            int read = await ctx.Request.Body.ReadAsync(new byte[10]);
            seen.Enqueue($"{ctx.Request.Method} upgradable={ctx.Features.Get<IHttpUpgradeFeature>()!.IsUpgradableRequest} read={read}");
        };
        using (var client = await RawClient.ConnectAsync(_host.Port(), token))
        {
            await client.SendAsync(token, "POST / HTTP/1.1", "Host:", "Content-Length: 0", "Connection: Upgrade, keep-alive", "", "");
            await client.ReceiveAsync("HTTP/1.1 200 OK", token);
        }
        using (var client = await RawClient.ConnectAsync(_host.Port(), token))
        {
            await client.SendAsync(token, GetWithUpgrade);
            await client.ReceiveAsync("HTTP/1.1 200 OK", token);
        }
        Assert.That(seen, Is.EqualTo(new[] { "POST upgradable=True read=0", "GET upgradable=True read=0" }));
    }

    [Test, CancelAfter(30_000), Description("UpgradeTests.AcceptsRequestWithChunkedEncodingAndUpgrade")]
    public async Task AChunkedRequestWithConnectionUpgradeIsNotUpgradable(CancellationToken token)
    {
        var seen = Signal<string>();
        _host.Handler = async ctx =>
        {
            int read = await ctx.Request.Body.ReadAsync(new byte[12]);
            seen.TrySetResult($"upgradable={ctx.Features.Get<IHttpUpgradeFeature>()!.IsUpgradableRequest} length={ctx.Request.ContentLength?.ToString() ?? "none"} te={ctx.Request.Headers.TransferEncoding} read={read}");
        };
        using var client = await RawClient.ConnectAsync(_host.Port(), token);
        await client.SendAsync(token, "POST / HTTP/1.1", "Host:", "Transfer-Encoding: chunked", "Connection: Upgrade", "", "B", "Hello World", "0", "", "");
        await client.ReceiveAsync("HTTP/1.1 200 OK", token);
        Assert.That(await Within(seen.Task, token), Is.EqualTo("upgradable=False length=none te=chunked read=11"));
    }

    [Test, CancelAfter(30_000), Description("UpgradeTests.ThrowsWhenUpgradingNonUpgradableRequest")]
    public async Task UpgradingARequestThatCannotBeUpgradedThrows(CancellationToken token)
    {
        var upgrade = Signal<Exception?>();
        _host.Handler = async ctx =>
        {
            try
            {
                await ctx.Features.Get<IHttpUpgradeFeature>()!.UpgradeAsync();
                upgrade.TrySetResult(null);
            }
            catch (Exception e)
            {
                upgrade.TrySetResult(e);
            }
        };
        using var client = await RawClient.ConnectAsync(_host.Port(), token);
        await client.SendAsync(token, EmptyGet);
        await client.ReceiveAsync("HTTP/1.1 200 OK", token);
        Assert.That(await Within(upgrade.Task, token), Is.InstanceOf<InvalidOperationException>());
    }

    [Test, CancelAfter(30_000), Description("UpgradeTests.RejectsUpgradeWhenLimitReached")]
    public async Task AnUpgradePastMaxConcurrentUpgradedConnectionsIsRefused(CancellationToken token)
    {
        var refused = Signal<Exception>();
        _host.Handler = async ctx =>
        {
            var feature = ctx.Features.Get<IHttpUpgradeFeature>()!;
            try
            {
                using var stream = await feature.UpgradeAsync();
                // Held until the client leaves (its FIN fires RequestAborted), bounded.
                await Task.Delay(TimeSpan.FromSeconds(20), ctx.RequestAborted).ContinueWith(_ => { });
            }
            catch (InvalidOperationException e)
            {
                refused.TrySetResult(e);
            }
        };
        var held = new List<RawClient>();
        try
        {
            for (int i = 0; i < UpgradeLimit; i++)
            {
                var client = await RawClient.ConnectAsync(_host.Port(), token);
                held.Add(client);
                await client.SendAsync(token, "GET / HTTP/1.1", "Host:", "Connection: Upgrade, keep-alive", "", "");
                await client.ReceiveAsync("HTTP/1.1 101", token);
            }
            using var over = await RawClient.ConnectAsync(_host.Port(), token);
            await over.SendAsync(token, "GET / HTTP/1.1", "Host:", "Connection: Upgrade, keep-alive", "", "");
            await over.ReceiveAsync("HTTP/1.1 200", token);
            Assert.That((await Within(refused.Task, token)).Message, Does.Contain("maximum number of upgraded connections"));
        }
        finally
        {
            foreach (var client in held)
                client.Dispose();
        }
        // The next test may upgrade again: the held ones are released (their handlers see the FIN).
        var deadline = System.Diagnostics.Stopwatch.StartNew();
        while (_host.Logs.Count(l => l.Event.Name == "ConnectionStop") < UpgradeLimit + 1 && deadline.Elapsed < TimeSpan.FromSeconds(10))
            await Task.Delay(20, token);
        Assert.That(_host.Logs.Count(l => l.Event.Name == "ConnectionStop"), Is.GreaterThanOrEqualTo(UpgradeLimit + 1), "every connection stopped");
    }

    [Test, CancelAfter(30_000), Description("UpgradeTests.DoesNotThrowOnFin")]
    public async Task TheClientsFinEndsTheUpgradedStreamWithoutAnError(CancellationToken token)
    {
        var copied = Signal<Exception?>();
        _host.Handler = async ctx =>
        {
            var stream = await ctx.Features.Get<IHttpUpgradeFeature>()!.UpgradeAsync();
            try
            {
                await stream.CopyToAsync(Stream.Null).WaitAsync(TimeSpan.FromSeconds(10));
                copied.TrySetResult(null);
            }
            catch (Exception e)
            {
                copied.TrySetResult(e);
            }
        };
        using (var client = await RawClient.ConnectAsync(_host.Port(), token))
        {
            await client.SendAsync(token, GetWithUpgrade);
            await client.ReceiveAsync("HTTP/1.1 101 Switching Protocols", token);
        }
        Assert.That(await Within(copied.Task, token), Is.Null);
    }
}
