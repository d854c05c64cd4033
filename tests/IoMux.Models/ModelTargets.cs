using IoMux.Backends.EventPorts;
using IoMux.Backends.Kqueue;
using IoMux.Conformance;

namespace IoMux.Models;

/// <summary>The backends of other OSes over models of their system calls on this one: one target per OS profile.
/// Evidence about IoMux's logic on those OSes, never a native verification.</summary>
public static class ModelTargets
{
    /// <summary>The event ports backend over illumos and Solaris, and the kqueue backend over every
    /// <see cref="KqueuePlatform"/> (named kqueue-model-&lt;os&gt;).</summary>
    public static IReadOnlyList<BackendProvider> All { get; } =
    [
        new(BackendKind.EventPorts, "ports-model", "event ports backend over a model of illumos event ports (Linux fds)",
            LinuxOnly, () => new EventPortsBackend(new EventPortModel(withReadHangup: true))),
        new(BackendKind.EventPorts, "ports-model-solaris", "event ports backend over a model of Solaris event ports (no POLLRDHUP: derived)",
            LinuxOnly, () => new EventPortsBackend(new EventPortModel(withReadHangup: false))),
        .. KqueuePlatform.All.Select(platform => new BackendProvider(BackendKind.Kqueue, ProfileName(platform),
            $"kqueue backend over a model of {platform.Name}'s kqueue (Linux fds, epoll underneath)",
            LinuxOnly, () => new KqueueBackend(new KqueueModel(platform)))),
    ];

    /// <summary>The conformance targets of this build plus the models: what the NUnit suite runs.</summary>
    public static IReadOnlyList<BackendProvider> WithNative { get; } = [.. ConformanceRunner.Targets, .. All];

    /// <summary>"kqueue-model-freebsd-14", "kqueue-model-macos" ...</summary>
    internal static string ProfileName(KqueuePlatform platform) =>
        "kqueue-model-" + platform.Name.ToLowerInvariant().Replace(' ', '-').Replace('.', '-');

    /// <summary>Empties the models' refusal logs (before a scenario).</summary>
    public static void ClearRefusals()
    {
        KqueueModel.Refused.Clear();
        EventPortModel.Refused.Clear();
    }

    /// <summary>What the modelled kernels refused since <see cref="ClearRefusals"/>.</summary>
    public static IReadOnlyList<string> Refusals => [.. KqueueModel.Refused, .. EventPortModel.Refused];

    private static string? LinuxOnly() => OperatingSystem.IsLinux() ? null : "the models are built on Linux epoll and poll semantics (POLLRDHUP)";
}
