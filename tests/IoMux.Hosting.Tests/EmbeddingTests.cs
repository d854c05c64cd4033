using IoMux.Hosting;
using IoMux.Loop;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace IoMux.Tests.Hosting;

/// <summary>An IoMux loop embedded in the generic host (issue 22, docs/LOOP.md row 12): the host runs an outer loop
/// (<c>AddEventLoop</c>), which drives an inner loop through its descriptor and Prepare/Wait/Dispatch, as an sd-event
/// program embeds a loop with sd_event_get_fd. The inner loop's timer and an action posted to it from another thread are
/// served on the host's loop thread, and the host's stop ends both.</summary>
[NonParallelizable]
public sealed class EmbeddingTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(10);

    [Test, CancelAfter(60_000)]
    public async Task ALoopEmbeddedInTheHostsLoopServesItsTimerAndPostsAndStopsWithTheHost(CancellationToken token)
    {
        if (!OperatingSystem.IsLinux())
            Assert.Ignore("the embeddable descriptor is epoll's");
        var timer = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        var posted = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        var inner = new EventLoop(PollerFactory.Create("epoll")); // backends are internal: chosen by name
        int exits = 0;
        inner.AddExit(_ => exits++);
        int outerThread = 0;
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = [], ContentRootPath = AppContext.BaseDirectory });
        builder.Logging.ClearProviders();
        builder.Services.AddEventLoop(outer =>
        {
            var embed = LoopEmbedding.Embed(outer, inner);
            outer.AddDefer(_ =>
            {
                // Armed once the host's loop runs, so that only the inner loop's descriptor can wake that loop for it (a
                // timer armed before the host started would be due at the outer loop's first look).
                outerThread = Environment.CurrentManagedThreadId;
                inner.AddSlimTimer(TimeSpan.FromMilliseconds(200), _ => timer.TrySetResult(Environment.CurrentManagedThreadId), accuracy: TimeSpan.Zero);
            });
            outer.AddExit(_ =>
            {
                // The host's stop: the inner loop exits (its exit sources run) and goes with the outer one.
                embed.Dispose();
                inner.Exit();
                inner.RunOnce(TimeSpan.Zero);
                inner.Dispose();
            });
        });
        using var host = builder.Build();
        await host.StartAsync(token);
        try
        {
            int timerThread = await timer.Task.WaitAsync(Patience, token);
            inner.Post(() => posted.TrySetResult(Environment.CurrentManagedThreadId)); // from a thread that is not the loop's
            int postThread = await posted.Task.WaitAsync(Patience, token);
            Assert.That(outerThread, Is.Not.Zero);
            Assert.That((timerThread, postThread), Is.EqualTo((outerThread, outerThread)), "served on the host's loop thread");
            Assert.That(outerThread, Is.Not.EqualTo(Environment.CurrentManagedThreadId));
        }
        finally
        {
            using var stop = CancellationTokenSource.CreateLinkedTokenSource(token);
            stop.CancelAfter(Patience);
            await host.StopAsync(stop.Token);
        }
        Assert.That(exits, Is.EqualTo(1), "the inner loop's exit sources ran at the host's stop");
        Assert.Throws<ObjectDisposedException>(() => inner.AddDefer(_ => { }), "the inner loop went with the host");
    }
}
