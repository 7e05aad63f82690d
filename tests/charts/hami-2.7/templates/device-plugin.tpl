apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: {{ .Release.Name }}-device-plugin
  labels:
    helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
    app.kubernetes.io/name: hami
    app.kubernetes.io/instance: {{ .Release.Name }}
    app.kubernetes.io/component: hami-device-plugin
spec:
  selector:
    matchLabels:
      app.kubernetes.io/instance: {{ .Release.Name }}
      app.kubernetes.io/component: hami-device-plugin
  template:
    metadata:
      labels:
        app.kubernetes.io/name: hami
        app.kubernetes.io/instance: {{ .Release.Name }}
        app.kubernetes.io/component: hami-device-plugin
    spec:
      nodeSelector:
        {{- toYaml .Values.devicePlugin.nvidianodeSelector | nindent 8 }}
      tolerations:
      - operator: Exists
      containers:
      - name: device-plugin
        image: "{{ .Values.scheduler.extender.image.registry }}/{{ .Values.scheduler.extender.image.repository }}:{{ .Values.global.imageTag }}"
        args:
        - --device-split-count={{ .Values.devicePlugin.deviceSplitCount }}
        - --resource-name={{ .Values.resourceName }}
